#include "coordinator/mesh/registry_service.h"

#include <spdlog/spdlog.h>

#include "common/tls.h"
#include "common/grpc_status.h"

namespace loom {
namespace {

PeerIdentity Peer(grpc::CallbackServerContext* context) {
  std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
  return auth ? PeerOf(*auth) : PeerIdentity{};
}

}  // namespace

grpc::ServerUnaryReactor* RegistryService::Register(grpc::CallbackServerContext* context,
                                                    const v1::RegisterRequest* request,
                                                    v1::RegisterResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (absl::Status allowed = auth_->CheckRegister(*request, Peer(context)); !allowed.ok()) {
    spdlog::warn("refused Register from {}: {}", context->peer(), allowed.ToString());
    reactor->Finish(ToGrpcStatus(allowed));
    return reactor;
  }
  absl::StatusOr<v1::RegisterResponse> result = registry_->Register(*request);
  if (result.ok()) *response = *std::move(result);
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

grpc::ServerUnaryReactor* RegistryService::Heartbeat(grpc::CallbackServerContext* context,
                                                     const v1::HeartbeatRequest* request,
                                                     v1::HeartbeatResponse* response) {
  auto* reactor = context->DefaultReactor();
  absl::Status status = auth_->CheckDevice(request->device_id(), Peer(context));
  if (status.ok()) {
    absl::StatusOr<v1::HeartbeatResponse> result = registry_->Heartbeat(*request);
    if (result.ok()) *response = *std::move(result);
    status = result.status();
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* RegistryService::Deregister(grpc::CallbackServerContext* context,
                                                      const v1::DeregisterRequest* request,
                                                      v1::DeregisterResponse* response) {
  auto* reactor = context->DefaultReactor();
  absl::Status status = auth_->CheckDevice(request->device_id(), Peer(context));
  if (status.ok()) status = registry_->Deregister(*request);
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace loom
