// File: coordinator/orchestrator_service.h
// The Orchestrator gRPC service: a thin adapter over RequestRunner. Requests run on the
// service's thread pool (they block on workers and the ledger); reactors only hand results
// back. Client cancellation and deadlines reach the running request through a Cancellation.
// Thread-safe.
#ifndef LOOM_COORDINATOR_ORCHESTRATOR_SERVICE_H_
#define LOOM_COORDINATOR_ORCHESTRATOR_SERVICE_H_

#include "common/thread_pool.h"
#include "coordinator/authenticator.h"
#include "coordinator/registry.h"
#include "coordinator/request_runner.h"
#include "loom/v1/orchestrator.grpc.pb.h"

namespace loom {

class OrchestratorService final : public v1::Orchestrator::CallbackService {
 public:
  // Complete, StreamComplete and Explain need an API key in "authorization: Bearer <key>"
  // metadata (unless `auth` allows anonymous use); the request's client_id is replaced by the
  // key's client.
  OrchestratorService(RequestRunner* runner, DeviceRegistry* registry, const Authenticator* auth,
                      int threads);

  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* context,
                                     const v1::CompleteRequest* request,
                                     v1::CompleteResponse* response) override;
  grpc::ServerWriteReactor<v1::CompleteEvent>* StreamComplete(
      grpc::CallbackServerContext* context, const v1::CompleteRequest* request) override;
  grpc::ServerUnaryReactor* Explain(grpc::CallbackServerContext* context,
                                    const v1::CompleteRequest* request,
                                    v1::CompilationPlan* response) override;
  grpc::ServerUnaryReactor* ListDevices(grpc::CallbackServerContext* context,
                                        const v1::ListDevicesRequest* request,
                                        v1::ListDevicesResponse* response) override;

 private:
  RequestRunner* const runner_;
  DeviceRegistry* const registry_;
  const Authenticator* const auth_;
  ThreadPool pool_;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_ORCHESTRATOR_SERVICE_H_
