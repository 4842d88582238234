// File: coordinator/mesh/registry_service.h
// The Registry gRPC service: checks the caller's device identity (DeviceAuth), then adapts
// DeviceRegistry. Every handler is a short critical section, so it runs inline on the reactor
// thread. Thread-safe.
#ifndef LOOM_COORDINATOR_MESH_REGISTRY_SERVICE_H_
#define LOOM_COORDINATOR_MESH_REGISTRY_SERVICE_H_

#include "coordinator/mesh/device_auth.h"
#include "coordinator/mesh/registry.h"
#include "loom/v1/registry.grpc.pb.h"

namespace loom {

class RegistryService final : public v1::Registry::CallbackService {
 public:
  RegistryService(DeviceRegistry* registry, DeviceAuth* auth) : registry_(registry), auth_(auth) {}

  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* context,
                                     const v1::RegisterRequest* request,
                                     v1::RegisterResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* Deregister(grpc::CallbackServerContext* context,
                                       const v1::DeregisterRequest* request,
                                       v1::DeregisterResponse* response) override;

 private:
  DeviceRegistry* const registry_;
  DeviceAuth* const auth_;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_MESH_REGISTRY_SERVICE_H_
