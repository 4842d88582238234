// File: worker/registrar.h
// Keeps a worker in the mesh: registers with the coordinator (retrying with backoff while it is
// unreachable), heartbeats its load at the interval the lease asks for, registers again by
// itself when the coordinator no longer knows it (after a coordinator restart or an expired
// lease), and deregisters on Stop().
//
// Thread-safe. Owns one background thread between Start() and Stop().
// Failure: a refusal that retrying cannot fix (FAILED_PRECONDITION such as a protocol major
// mismatch, INVALID_ARGUMENT, PERMISSION_DENIED, UNAUTHENTICATED) is reported once through
// on_fatal and the thread stops.
#ifndef LOOM_WORKER_REGISTRAR_H_
#define LOOM_WORKER_REGISTRAR_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/security/credentials.h>

#include "common/tls.h"
#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "loom/v1/registry.grpc.pb.h"

namespace loom {

struct RegistrarOptions {
  std::string coordinator;                         // host:port of the Registry service
  // How to reach it (ChannelCredentialsFor in common/tls.h); null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // Without a client certificate: the join token the coordinator issued for this device;
  // every Register then carries a fresh JoinProof made with it.
  std::string join_token;
  absl::Duration rpc_timeout = absl::Seconds(2);   // deadline of each call
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(2);   // between failed Register attempts
};

class Registrar {
 public:
  Registrar(RegistrarOptions options, std::function<v1::RegisterRequest()> advertisement,
            std::function<v1::DeviceLoad()> load, std::function<void(absl::Status)> on_fatal);
  ~Registrar();

  void Start();
  // Stops heartbeating and deregisters (best effort, bounded by rpc_timeout).
  void Stop();

  // Registers again soon (the advertisement changed: sizes learnt from the model server).
  void Readvertise() ABSL_LOCKS_EXCLUDED(mu_);

  bool registered() const;
  int registrations() const;  // how many times Register succeeded

 private:
  void Loop();
  absl::Status RegisterOnce() ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status HeartbeatOnce() ABSL_LOCKS_EXCLUDED(mu_);

  // Constant after construction.
  const RegistrarOptions options_;
  const std::function<v1::RegisterRequest()> advertisement_;
  const std::function<v1::DeviceLoad()> load_;
  const std::function<void(absl::Status)> on_fatal_;
  std::unique_ptr<v1::Registry::Stub> stub_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::string lease_id_ ABSL_GUARDED_BY(mu_);  // empty when not registered
  std::string device_id_ ABSL_GUARDED_BY(mu_);
  absl::Duration interval_ ABSL_GUARDED_BY(mu_) = absl::Seconds(1);
  int registrations_ ABSL_GUARDED_BY(mu_) = 0;

  std::thread thread_;
};

}  // namespace loom

#endif  // LOOM_WORKER_REGISTRAR_H_
