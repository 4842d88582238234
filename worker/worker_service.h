// File: worker/worker_service.h
// The Worker gRPC service: a thin adapter from Infer/Describe to the device's
// InferenceProviders. Admission is bounded: beyond max_concurrency running generations it
// answers RESOURCE_EXHAUSTED at once (the coordinator then tries another device).
// Generation runs on the service's own threads, never on gRPC reactor threads.
//
// Thread-safe.
#ifndef LOOM_WORKER_WORKER_SERVICE_H_
#define LOOM_WORKER_WORKER_SERVICE_H_

#include <map>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/thread_pool.h"
#include "loom/v1/worker.grpc.pb.h"
#include "worker/inference_provider.h"

namespace loom {

struct ServedModel {
  v1::ModelInfo info;
  std::unique_ptr<InferenceProvider> provider;
};

struct WorkerServiceOptions {
  std::string device_id;
  std::string provider_id;
  int max_concurrency = 4;  // generations at once; more are refused
  // With TLS client certificates: only a caller whose certificate has the coordinator role
  // may run Infer (another device cannot use this one for free).
  bool require_coordinator_peer = false;
  // In join-token mode: answers the coordinator's dial challenge with this token (join_token.h).
  std::string join_token;
  // Called when a generation fails as if the backend were gone (UNAVAILABLE): the upstream
  // monitor checks it at once.
  std::function<void()> on_upstream_failure;
  // The speed reported before any generation has measured one (a simulated device knows its
  // own); 0: unknown until then.
  double initial_tokens_per_second = 0;
  // For a caller that does not watch the text come (InferRequest.batch_ok): text that comes
  // within this long of the last message sent is held and goes out with the next (a burst is
  // one message). Also what such a call leaves unpaid at most when it is cancelled.
  absl::Duration batch_window = absl::Milliseconds(5);
};

class WorkerService final : public v1::Worker::CallbackService {
 public:
  WorkerService(WorkerServiceOptions options, std::vector<ServedModel> models);
  ~WorkerService() override;

  grpc::ServerWriteReactor<v1::InferChunk>* Infer(grpc::CallbackServerContext* context,
                                                  const v1::InferRequest* request) override;
  grpc::ServerUnaryReactor* Embed(grpc::CallbackServerContext* context,
                                  const v1::EmbedRequest* request,
                                  v1::EmbedResponse* response) override;
  grpc::ServerUnaryReactor* Describe(grpc::CallbackServerContext* context,
                                     const v1::DescribeRequest* request,
                                     v1::DescribeResponse* response) override;

  // Where the coordinator reaches this service; set once the server has bound its port.
  void set_address(const std::string& address);
  v1::DeviceLoad Load() const;
  v1::DeviceInfo Info() const;
  // The size the model server reports for `model`, advertised from the next registration.
  void SetParametersB(const std::string& model, double parameters_b) ABSL_LOCKS_EXCLUDED(mu_);
  // Every model's CheckUpstream (each bounded by `timeout`): OK, or the first problem, named
  // by its model when the device serves several.
  absl::Status CheckUpstreams(absl::Duration timeout) const;

 private:
  friend class InferReactor;  // runs on pool_, calls Release and RecordSpeed
  // Checks the caller (a coordinator, with the dial proof answered) and the model (served
  // here, of the kind the call needs), then takes a generation slot: the provider, or the
  // refusal. Release() gives the slot back.
  absl::StatusOr<InferenceProvider*> Admit(grpc::CallbackServerContext* context,
                                           const std::string& model, bool embedding,
                                           const char* rpc) ABSL_LOCKS_EXCLUDED(mu_);
  void Release();
  void RecordSpeed(int64_t tokens, double seconds);

  // Constant after construction.
  const WorkerServiceOptions options_;
  std::map<std::string, ServedModel> models_;
  bool simulated_ = false;

  mutable absl::Mutex mu_;
  int active_ ABSL_GUARDED_BY(mu_) = 0;
  std::string address_ ABSL_GUARDED_BY(mu_);
  double tokens_per_second_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, double> parameters_b_ ABSL_GUARDED_BY(mu_);  // learnt from the server

  ThreadPool pool_;  // last: joined first on destruction
};

}  // namespace loom

#endif  // LOOM_WORKER_WORKER_SERVICE_H_
