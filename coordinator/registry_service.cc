#include "coordinator/registry_service.h"

#include "common/grpc_status.h"

namespace loom {

grpc::ServerUnaryReactor* RegistryService::Register(grpc::CallbackServerContext* context,
                                                    const v1::RegisterRequest* request,
                                                    v1::RegisterResponse* response) {
  auto* reactor = context->DefaultReactor();
  absl::StatusOr<v1::RegisterResponse> result = registry_->Register(*request);
  if (result.ok()) *response = *std::move(result);
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

grpc::ServerUnaryReactor* RegistryService::Heartbeat(grpc::CallbackServerContext* context,
                                                     const v1::HeartbeatRequest* request,
                                                     v1::HeartbeatResponse* response) {
  auto* reactor = context->DefaultReactor();
  *response = registry_->Heartbeat(*request);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* RegistryService::Deregister(grpc::CallbackServerContext* context,
                                                      const v1::DeregisterRequest* request,
                                                      v1::DeregisterResponse* response) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(registry_->Deregister(*request)));
  return reactor;
}

}  // namespace loom
