// File: coordinator/pipeline/request_log.h
// The most recent requests this coordinator ran, for the web console (console_api.h): a bounded
// ring, newest first. Each entry says who sent it, what it was turned into (the plan: sub-tasks,
// dependencies, assignments), how it ran (attempts, failed ones with their reason; compete
// candidates and the winner; contributions) and how it ended (cost, latency, error). A running
// request shows its plan and each attempt as it ends (and, streamed, each sub-task as it
// starts).
//
// Only previews of text are kept (prompt, answer, sub-task prompts: a few hundred bytes, cut on a
// character boundary): the log is for looking, not for replaying. It lives in memory and is lost
// on a restart; the ledger keeps what is owed.
//
//   RequestLog log(200);
//   log.Begin(id, "client:alice", request);     // RequestRunner::Run does this
//   log.Plan(id, plan); log.Attempt(id, attempt); // as they happen
//   log.End(id, result);
//   std::vector<RequestLog::Entry> mine = log.List("client:alice", 50);
//
// Thread-safe.
#ifndef LOOM_COORDINATOR_PIPELINE_REQUEST_LOG_H_
#define LOOM_COORDINATOR_PIPELINE_REQUEST_LOG_H_

#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "loom/v1/orchestrator.pb.h"

namespace loom {

class RequestLog {
 public:
  static constexpr size_t kPromptPreviewBytes = 400;
  static constexpr size_t kOutputPreviewBytes = 2000;

  struct Entry {
    std::string id;          // the ledger's id (a client's own id is scoped: client:NAME/ID)
    std::string display_id;  // as the client knows it
    std::string client;      // the paying account
    std::string model;       // as asked ("" = loom-auto)
    std::string prompt;      // preview of the last user message
    absl::Time started;
    absl::Time finished;     // InfinitePast while running
    bool running = true;
    std::string error;       // set when it failed (the status, as the client saw it)
    // What is known so far: the plan once made, sub-task events while running, then the
    // whole response (its output cut to a preview) when it ends.
    v1::CompleteResponse response;
    std::vector<v1::SubTaskEvent> events;
  };

  explicit RequestLog(size_t capacity = 200, Clock* clock = nullptr);

  void Begin(const std::string& id, const std::string& display_id, const std::string& client,
             const v1::CompleteRequest& request) ABSL_LOCKS_EXCLUDED(mu_);
  // What a running request has done so far: its plan once made, each attempt as it ends, and
  // (streamed requests) the sub-task events (others are ignored).
  void Plan(const std::string& id, const v1::CompilationPlan& plan) ABSL_LOCKS_EXCLUDED(mu_);
  void Attempt(const std::string& id, const v1::Attempt& attempt) ABSL_LOCKS_EXCLUDED(mu_);
  void Event(const std::string& id, const v1::CompleteEvent& event) ABSL_LOCKS_EXCLUDED(mu_);
  void End(const std::string& id, const absl::StatusOr<v1::CompleteResponse>& result)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Newest first, at most `limit`; `client` empty: everyone's.
  std::vector<Entry> List(const std::string& client, size_t limit) const ABSL_LOCKS_EXCLUDED(mu_);
  // The entry with ledger id `id`, if `client` is empty or sent it.
  std::optional<Entry> Get(const std::string& id, const std::string& client) const
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  Entry* Find(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t capacity_;
  Clock* const clock_;
  mutable absl::Mutex mu_;
  std::deque<Entry> entries_ ABSL_GUARDED_BY(mu_);  // newest at the front
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_PIPELINE_REQUEST_LOG_H_
