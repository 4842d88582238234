// File: common/grpc_server.h
// Starts a gRPC server the way every Loom daemon does: the given services plus the standard
// grpc.health.v1 health service and server reflection (v1alpha, and v1: reflection_v1.h), on
// one listen address (port 0 picks a
// free port; the bound address is returned).
#ifndef LOOM_COMMON_GRPC_SERVER_H_
#define LOOM_COMMON_GRPC_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"

namespace loom {

class ReflectionV1Service;

struct StartedServer {
  StartedServer();
  StartedServer(StartedServer&&);
  StartedServer& operator=(StartedServer&&);
  ~StartedServer();
  std::unique_ptr<ReflectionV1Service> reflection_v1;  // outlives the server (declared first)
  std::unique_ptr<grpc::Server> server;
  std::string address;  // host:port actually bound
};

// UNAVAILABLE when the address cannot be bound.
// `credentials`: ServerCredentialsFor (common/tls.h), or grpc::InsecureServerCredentials().
// `health_names`: the services' full names ("loom.v1.Orchestrator"), each reported SERVING to
// grpc.health.v1 probes that name it (the empty name, the whole server, is SERVING too).
absl::StatusOr<StartedServer> StartGrpcServer(const std::string& listen,
                                              const std::vector<grpc::Service*>& services,
                                              std::shared_ptr<grpc::ServerCredentials> credentials,
                                              const std::vector<std::string>& health_names = {});

// Marks the server NOT_SERVING in the health service and stops it, giving in-flight calls
// up to `grace` to finish.
void StopGrpcServer(grpc::Server* server, absl::Duration grace);

}  // namespace loom

#endif  // LOOM_COMMON_GRPC_SERVER_H_
