// File: coordinator/front/admission.h
// Who may start a request now, on every front door (gRPC unary and streamed, HTTP): a bounded
// number of requests run at once, a bounded number wait, and no client can take the door from
// the others.
//
//   Admission admission({.slots = 64, .max_waiting = 64, .max_running_per_client = 32});
//   absl::StatusOr<Admission::Ticket> ticket = admission.Acquire("client:alice", deadline, &cancel);
//   if (!ticket.ok()) return ticket.status();   // RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, CANCELLED
//   ... run the request; the slot is freed when the ticket goes ...
//
// Fairness (the rules a queued request of any client can count on):
//  - A client runs at most `max_running_per_client` requests at once; past that it is refused
//    at once (RESOURCE_EXHAUSTED, "already has N running"), so it cannot hold every slot.
//  - When every slot is taken, a request waits. The waiting room is shared out equally: a
//    client may have at most max_waiting / (clients waiting) requests waiting (at least one),
//    so a client that arrives at a full room still gets a place, and the room holds at most
//    2 x max_waiting. A client past its share is refused at once (RESOURCE_EXHAUSTED, "busy").
//  - A freed slot goes to the waiting client that was given a slot longest ago (its oldest
//    request first), so clients take turns: one client's long queue cannot delay another
//    client by more than one request per client waiting ahead of it.
// Waits end at the deadline or the cancellation. Thread-safe.
#ifndef LOOM_COORDINATOR_FRONT_ADMISSION_H_
#define LOOM_COORDINATOR_FRONT_ADMISSION_H_

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/cancellation.h"

namespace loom {

struct AdmissionOptions {
  int slots = 64;                   // requests running at once, every door together
  int max_waiting = 64;             // requests waiting for a slot (shared out per client)
  int max_running_per_client = 32;  // 0: no limit beyond `slots`
};

class Admission {
 public:
  // A running request's slot, freed on destruction. Movable.
  class Ticket {
   public:
    Ticket(Ticket&& other) noexcept : admission_(other.admission_), client_(std::move(other.client_)) {
      other.admission_ = nullptr;
    }
    Ticket& operator=(Ticket&&) = delete;
    Ticket(const Ticket&) = delete;
    ~Ticket() {
      if (admission_) admission_->Release(client_);
    }

   private:
    friend class Admission;
    Ticket(Admission* admission, std::string client)
        : admission_(admission), client_(std::move(client)) {}
    Admission* admission_;
    std::string client_;
  };

  explicit Admission(AdmissionOptions options) : options_(options) {}
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  // A slot for a request of `client`, now or after a wait (until `deadline` or `cancel`, which
  // may be null).
  absl::StatusOr<Ticket> Acquire(const std::string& client, absl::Time deadline,
                                 const Cancellation* cancel);

  int running() const;
  int waiting() const;

 private:
  struct Waiter {
    bool granted = false;
    bool gave_up = false;
  };
  struct Client {
    int running = 0;
    std::deque<Waiter*> waiting;
    int64_t last_served = 0;  // when it was last given a slot (serve_seq_)
  };
  void Release(const std::string& client);
  // Hands free slots to waiting requests, clients in turn (served longest ago first).
  void GrantLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseIfIdleLocked(const std::string& client) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const AdmissionOptions options_;
  mutable absl::Mutex mu_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, Client> clients_ ABSL_GUARDED_BY(mu_);  // erased when idle
  std::set<std::string> waiting_clients_ ABSL_GUARDED_BY(mu_);  // clients with waiters
  int64_t serve_seq_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_FRONT_ADMISSION_H_
