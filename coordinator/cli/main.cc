// loom: the client CLI. Speaks the coordinator's gRPC Orchestrator API.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "common/flags_usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/json_config.h"
#include "coordinator/cli/loom_cli.h"
#include "loom/v1/orchestrator.grpc.pb.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:7070", "Coordinator gRPC address.");
ABSL_FLAG(bool, json, false, "Print the result as JSON (proto3 JSON mapping).");
ABSL_FLAG(std::string, model, "", "ask/plan: run on this model.");
ABSL_FLAG(std::string, family, "", "ask/plan: run on a model of this family.");
ABSL_FLAG(int64_t, max_tokens, 0, "ask: at most this many output tokens (0: coordinator default).");
ABSL_FLAG(std::string, client, "", "ask: account to charge (default: the coordinator's).");
ABSL_FLAG(std::string, system, "", "ask/plan: a system prompt.");
ABSL_FLAG(std::string, mode, "", "ask/plan: force the plan: passthrough, compiled or compete.");
ABSL_FLAG(int64_t, timeout_ms, 120000, "Deadline of the call.");

namespace {

constexpr char kUsage[] =
    "loom [--coordinator=HOST:PORT] COMMAND ...\n"
    "\n"
    "Commands:\n"
    "  ask \"PROMPT\"   run a request; streams the answer (--json: the whole result)\n"
    "                 [--model=NAME | --family=NAME] [--mode=passthrough|compiled|compete]\n"
    "                 [--max_tokens=N] [--system=TEXT] [--client=ACCOUNT]\n"
    "  plan \"PROMPT\"  show the plan the coordinator would follow, without running it\n"
    "  devices        the devices in the mesh with their models and load\n"
    "\n"
    "Exit codes: 0 ok, 1 the request failed, 2 bad usage.";

int Usage(const std::string& message) {
  std::cerr << "loom: " << message << "\n";
  return 2;
}

int Failed(const grpc::Status& status) {
  std::cerr << "loom: " << loom::FromGrpcStatus(status).ToString() << "\n";
  return 1;
}

std::unique_ptr<grpc::ClientContext> NewContext() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(
      absl::ToChronoTime(absl::Now() + absl::Milliseconds(absl::GetFlag(FLAGS_timeout_ms))));
  return context;
}

loom::v1::CompleteRequest BuildRequest(const std::string& prompt) {
  loom::v1::CompleteRequest request;
  if (!absl::GetFlag(FLAGS_system).empty()) {
    auto* m = request.add_messages();
    m->set_role("system");
    m->set_content(absl::GetFlag(FLAGS_system));
  }
  auto* m = request.add_messages();
  m->set_role("user");
  m->set_content(prompt);
  request.set_model(absl::GetFlag(FLAGS_model));
  request.set_family(absl::GetFlag(FLAGS_family));
  request.set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
  request.set_client_id(absl::GetFlag(FLAGS_client));
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "passthrough") request.set_mode(loom::v1::PLAN_KIND_PASSTHROUGH);
  if (mode == "compiled") request.set_mode(loom::v1::PLAN_KIND_COMPILED);
  if (mode == "compete") request.set_mode(loom::v1::PLAN_KIND_COMPETE);
  return request;
}

int Ask(loom::v1::Orchestrator::Stub* stub, const std::string& prompt) {
  loom::v1::CompleteRequest request = BuildRequest(prompt);
  auto context = NewContext();
  if (absl::GetFlag(FLAGS_json)) {
    loom::v1::CompleteResponse response;
    grpc::Status status = stub->Complete(context.get(), request, &response);
    if (!status.ok()) return Failed(status);
    std::cout << loom::ToJson(response) << "\n";
    return 0;
  }
  auto reader = stub->StreamComplete(context.get(), request);
  loom::v1::CompleteEvent event;
  loom::v1::CompleteResponse final_response;
  bool at_line_start = true;
  while (reader->Read(&event)) {
    switch (event.event_case()) {
      case loom::v1::CompleteEvent::kPlan:
        std::cerr << loom::FormatPlan(event.plan());
        break;
      case loom::v1::CompleteEvent::kSubTask:
        if (!at_line_start) std::cout << std::endl;
        at_line_start = true;
        std::cerr << loom::FormatEvent(event.sub_task());
        break;
      case loom::v1::CompleteEvent::kOutput:
        // Only the answer goes to stdout; sub-task text is progress.
        if (!event.output().answer()) break;
        std::cout << event.output().text() << std::flush;
        at_line_start = false;
        break;
      case loom::v1::CompleteEvent::kFinal:
        final_response = event.final();
        break;
      default:
        break;
    }
  }
  grpc::Status status = reader->Finish();
  if (!at_line_start) std::cout << std::endl;
  if (!status.ok()) return Failed(status);
  std::cerr << loom::FormatSummary(final_response);
  return 0;
}

int Plan(loom::v1::Orchestrator::Stub* stub, const std::string& prompt) {
  loom::v1::CompilationPlan plan;
  auto context = NewContext();
  grpc::Status status = stub->Explain(context.get(), BuildRequest(prompt), &plan);
  if (!status.ok()) return Failed(status);
  std::cout << (absl::GetFlag(FLAGS_json) ? loom::ToJson(plan) + "\n" : loom::FormatPlan(plan));
  return 0;
}

int Devices(loom::v1::Orchestrator::Stub* stub) {
  loom::v1::ListDevicesResponse devices;
  auto context = NewContext();
  grpc::Status status = stub->ListDevices(context.get(), {}, &devices);
  if (!status.ok()) return Failed(status);
  std::cout << (absl::GetFlag(FLAGS_json) ? loom::ToJson(devices) + "\n"
                                          : loom::FormatDevices(devices));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  loom::SetUsage(kUsage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) return Usage("missing command (try --help)");
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (!mode.empty() && mode != "passthrough" && mode != "compiled" && mode != "compete") {
    return Usage("--mode must be passthrough, compiled or compete");
  }
  const std::string command = args[1];
  auto stub = loom::v1::Orchestrator::NewStub(
      grpc::CreateChannel(absl::GetFlag(FLAGS_coordinator), grpc::InsecureChannelCredentials()));
  if (command == "ask" || command == "plan") {
    if (args.size() < 3) return Usage(absl::StrCat(command, ": missing the prompt"));
    std::string prompt = absl::StrJoin(args.begin() + 2, args.end(), " ");
    return command == "ask" ? Ask(stub.get(), prompt) : Plan(stub.get(), prompt);
  }
  if (command == "devices") {
    if (args.size() > 2) return Usage(absl::StrCat("devices: unexpected argument '", args[2], "'"));
    return Devices(stub.get());
  }
  return Usage(absl::StrCat("unknown command '", command, "' (try --help)"));
}
