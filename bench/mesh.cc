// File: bench/mesh.cc
#include "bench/mesh.h"

#include <unistd.h>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "common/join_token.h"
#include "loom/v1/orchestrator.grpc.pb.h"

namespace loom::bench {
namespace {

testing::Daemon Start(const std::string& binary, const std::string& dir, const std::string& name,
                      std::vector<std::string> args, int cpu) {
  std::string error;
  testing::Daemon d = testing::StartDaemon(binary, dir, name, std::move(args), &error,
                                           {.cpu = cpu, .die_with_parent = true});
  if (!d.process) Die(error);
  return d;
}

}  // namespace

Mesh StartMesh(const BenchConfig& config, const std::string& dir, const std::string& ledger) {
  Mesh mesh;
  mesh.ledger = ledger.empty() ? "sqlite:" + dir + "/loom.db" : ledger;
  const int server_cpu = config.pin ? 0 : -1;
  auto secret = LoadOrCreateJoinSecret(dir + "/join.secret");
  if (!secret.ok()) Die(std::string(secret.status().message()));
  mesh.join_secret = *secret;
  std::vector<std::string> coordinator_args{
      "--grpc_listen=127.0.0.1:0", "--http_listen=127.0.0.1:0", "--ledger=" + mesh.ledger,
      "--allow_anonymous=bench", "--decomposer=rules", "--log_level=warn", "--plaintext",
      "--join_secret_file=" + dir + "/join.secret"};
  coordinator_args.insert(coordinator_args.end(), config.coordinator_flags.begin(),
                          config.coordinator_flags.end());
  mesh.coordinator =
      Start(config.bin + "/loom-coordinator", dir, "coordinator", coordinator_args, server_cpu);
  const testing::CommandResult grant = testing::RunCommand(
      config.bin + "/loom-ledger",
      {"--ledger=" + mesh.ledger, "grant", "client:bench", "100000000", "--reference=bench"},
      absl::Seconds(30));
  if (grant.exit_code != 0) Die("granting the bench client credits failed: " + grant.err);
  for (const char* model : {"qwen2.5-coder-7b", "llama-3.1-8b", "mistral-7b", "qwen2.5-7b"}) {
    const std::string device = absl::StrCat("bench-", model);
    mesh.workers.push_back(Start(
        config.bin + "/loom-worker", dir, absl::StrCat("worker-", model),
        {"--coordinator=" + mesh.coordinator.address, "--device_id=" + device,
         absl::StrCat("--model=", model), absl::StrCat("--sim_output_tokens=", kAnswerTokens),
         "--max_concurrency=256", "--log_level=warn", "--plaintext",
         "--join_token=" + IssueJoinToken(mesh.join_secret, device, device)},
        server_cpu));
    if (std::string(model) == kPinnedModel) {
      mesh.worker_address = mesh.workers.back().address;
      mesh.worker_pid = mesh.workers.back().process->pid();
    }
  }
  for (const char* mode : {"sync", "callback"}) {
    mesh.proxies.emplace_back(
        mode, Start(config.bin + "/loom_bare_proxy", dir, absl::StrCat("proxy-", mode),
                    {"--target=" + mesh.worker_address, absl::StrCat("--mode=", mode)},
                    server_cpu));
  }
  // Bounded wait until the coordinator lists all four.
  auto stub = v1::Orchestrator::NewStub(
      grpc::CreateChannel(mesh.coordinator.address, grpc::InsecureChannelCredentials()));
  const bool listed = testing::WaitFor(
      [&] {
        grpc::ClientContext context;
        context.set_deadline(In(5));
        v1::ListDevicesResponse devices;
        return stub->ListDevices(&context, {}, &devices).ok() && devices.devices_size() == 4;
      },
      absl::Seconds(20));
  if (!listed) Die("workers did not register with the coordinator");
  return mesh;
}

}  // namespace loom::bench
