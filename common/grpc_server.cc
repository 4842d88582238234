#include "common/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "common/reflection_v1.h"
#include "absl/time/clock.h"

namespace loom {

StartedServer::StartedServer() = default;
StartedServer::StartedServer(StartedServer&&) = default;
StartedServer& StartedServer::operator=(StartedServer&&) = default;
StartedServer::~StartedServer() = default;

namespace {
constexpr int kIdleSyncThreads = 64;
}  // namespace

absl::StatusOr<StartedServer> StartGrpcServer(const std::string& listen,
                                              const std::vector<grpc::Service*>& services,
                                              std::shared_ptr<grpc::ServerCredentials> credentials,
                                              const std::vector<std::string>& health_names) {
  static const bool once = [] {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    return true;
  }();
  (void)once;
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("listen address '", listen, "' has no port"));
  }
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, std::move(credentials), &port);
  builder.SetMaxReceiveMessageSize(8 << 20);
  // Sync handlers (the coordinator's Complete) run on gRPC's own threads. By default it keeps
  // at most 2 of them idle, so under load a thread is made for a request and ends after it;
  // keeping up to kIdleSyncThreads doubled a forwarding proxy's requests/s (loom_bench).
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                              kIdleSyncThreads);
  for (grpc::Service* s : services) builder.RegisterService(s);
  StartedServer started;
  started.reflection_v1 = std::make_unique<ReflectionV1Service>(health_names);
  builder.RegisterService(started.reflection_v1.get());
  started.server = builder.BuildAndStart();
  if (!started.server || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen));
  }
  started.address = absl::StrCat(listen.substr(0, colon), ":", port);
  if (auto* health = started.server->GetHealthCheckService()) {
    for (const std::string& name : health_names) health->SetServingStatus(name, true);
  }
  return started;
}

void StopGrpcServer(grpc::Server* server, absl::Duration grace) {
  if (auto* health = server->GetHealthCheckService()) health->Shutdown();
  server->Shutdown(absl::ToChronoTime(absl::Now() + grace));
}

}  // namespace loom
