// File: coordinator/front/orchestrator_service.h
// The Orchestrator gRPC service: a thin adapter over RequestRunner. Client cancellation and
// deadlines reach the running request through a Cancellation. Thread-safe.
//
// Complete is a synchronous handler: gRPC's sync server runs it on the thread that received
// the call, with no hand-off to another thread before the request starts or after it ends
// (in this gRPC, each callback-API event is a hand-off to a polling thread, and thread
// switches cost more than the coordinator's own work). Sync handlers hear nothing when their
// client goes away, so a ClientGoneWatcher asks their contexts every 20 ms. StreamComplete,
// Explain and ListDevices stay on the callback API; StreamComplete and Explain run on threads
// of the service's ThreadCache. Every Complete and StreamComplete is authenticated first and
// then admitted (Admission, shared with the HTTP door: slots, a waiting room shared out per
// client, a per-client limit); its wait shows as the request's queued time.
#ifndef LOOM_COORDINATOR_FRONT_ORCHESTRATOR_SERVICE_H_
#define LOOM_COORDINATOR_FRONT_ORCHESTRATOR_SERVICE_H_

#include <map>
#include <thread>

#include <grpcpp/server_context.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/cancellation.h"
#include "common/thread_cache.h"
#include "coordinator/front/admission.h"
#include "coordinator/front/authenticator.h"
#include "coordinator/mesh/registry.h"
#include "coordinator/pipeline/request_runner.h"
#include "loom/v1/orchestrator.grpc.pb.h"

namespace loom {

// Fires a running sync call's Cancellation once its client cancels or disconnects, checking
// every `interval` while any call is watched (idle otherwise).
class ClientGoneWatcher {
 public:
  explicit ClientGoneWatcher(absl::Duration interval);
  ~ClientGoneWatcher();
  ClientGoneWatcher(const ClientGoneWatcher&) = delete;
  ClientGoneWatcher& operator=(const ClientGoneWatcher&) = delete;

  // Watches `context` until Remove(returned id); call Remove before the handler returns.
  int Add(grpc::ServerContext* context, Cancellation* cancel);
  void Remove(int id);

 private:
  void Loop();

  const absl::Duration interval_;
  absl::Mutex mu_;
  std::map<int, std::pair<grpc::ServerContext*, Cancellation*>> watched_ ABSL_GUARDED_BY(mu_);
  int next_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

class OrchestratorService final
    : public v1::Orchestrator::WithCallbackMethod_StreamComplete<
          v1::Orchestrator::WithCallbackMethod_Explain<
              v1::Orchestrator::WithCallbackMethod_ListDevices<v1::Orchestrator::Service>>> {
 public:
  // Complete, StreamComplete and Explain need an API key in "authorization: Bearer <key>"
  // metadata (unless `auth` allows anonymous use); the request's client_id is replaced by the
  // key's client.
  OrchestratorService(RequestRunner* runner, DeviceRegistry* registry, const Authenticator* auth,
                      Admission* admission);

  grpc::Status Complete(grpc::ServerContext* context, const v1::CompleteRequest* request,
                        v1::CompleteResponse* response) override;
  grpc::ServerWriteReactor<v1::CompleteEvent>* StreamComplete(
      grpc::CallbackServerContext* context, const v1::CompleteRequest* request) override;
  grpc::ServerUnaryReactor* Explain(grpc::CallbackServerContext* context,
                                    const v1::CompleteRequest* request,
                                    v1::CompilationPlan* response) override;
  grpc::ServerUnaryReactor* ListDevices(grpc::CallbackServerContext* context,
                                        const v1::ListDevicesRequest* request,
                                        v1::ListDevicesResponse* response) override;
  // Sync handlers: a verdict is one ledger write, the report a walk over the registry.
  grpc::Status Feedback(grpc::ServerContext* context, const v1::FeedbackRequest* request,
                        v1::FeedbackResponse* response) override;
  grpc::Status ListAffinities(grpc::ServerContext* context,
                              const v1::ListAffinitiesRequest* request,
                              v1::ListAffinitiesResponse* response) override;

 private:
  RequestRunner* const runner_;
  DeviceRegistry* const registry_;
  const Authenticator* const auth_;
  Admission* const admission_;
  ClientGoneWatcher watcher_{absl::Milliseconds(20)};
  // Last member: destroyed first, so running streams and explains finish before the rest.
  ThreadCache threads_;  // StreamComplete and Explain
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_FRONT_ORCHESTRATOR_SERVICE_H_
