// openai_standin: the test stand-in OpenAI-compatible server (tests/fakes/openai_standin.h) as
// a process, so integration tests can put real loom-worker processes in front of it.
//
//   openai_standin --models=qwen2.5-coder-standin,llama-standin --ready_file=PATH
#include <unistd.h>

#include <csignal>
#include <thread>
#include <fstream>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "common/ready_file.h"
#include "common/shutdown.h"
#include "tests/fakes/openai_standin.h"

ABSL_FLAG(std::string, models, "standin", "Comma-separated model names to serve.");
ABSL_FLAG(std::string, ready_file, "", "Write {\"base_url\": ...} here once serving.");
ABSL_FLAG(std::string, flavor, "plain", "Model list as: plain, llamacpp or ollama.");
ABSL_FLAG(int32_t, threads, 8,
          "Request threads (cpp-httplib's pool; llama-server's is as small). A kept-alive "
          "connection holds one while idle, so a bench with many clients wants more.");
ABSL_FLAG(std::string, loading_until_file, "",
          "Answer 503 \"Loading model\" until this file exists (checked every 50 ms).");

int main(int argc, char** argv) {
  loom::BlockShutdownSignals();
  absl::ParseCommandLine(argc, argv);
  std::vector<std::string> models = absl::StrSplit(absl::GetFlag(FLAGS_models), ',');
  loom::OpenAIStandIn server(models);
  if (const int threads = absl::GetFlag(FLAGS_threads); threads < 1 || threads > 4096) {
    std::cerr << "openai_standin: --threads is 1 to 4096\n";
    return 2;
  } else {
    server.set_threads(threads);
  }
  const std::string flavor = absl::GetFlag(FLAGS_flavor);
  if (flavor == "llamacpp") {
    server.set_flavor(loom::OpenAIStandIn::Flavor::kLlamaServer);
  } else if (flavor == "ollama") {
    server.set_flavor(loom::OpenAIStandIn::Flavor::kOllama);
  } else if (flavor != "plain") {
    std::cerr << "openai_standin: --flavor is plain, llamacpp or ollama\n";
    return 2;
  }
  const std::string loading_until = absl::GetFlag(FLAGS_loading_until_file);
  server.set_loading(!loading_until.empty());
  const std::string base_url = server.Start();
  if (!absl::GetFlag(FLAGS_ready_file).empty()) {
    (void)loom::WriteFileAtomically(absl::GetFlag(FLAGS_ready_file),
                                    absl::StrCat("{\"base_url\": \"", base_url, "\"}\n"));
  }
  loom::ShutdownWaiter waiter;
  // A model server that finishes loading when the test says so (the file appears).
  absl::Notification stopping;
  std::thread loader;
  if (!loading_until.empty()) {
    loader = std::thread([&] {
      do {
        if (access(loading_until.c_str(), F_OK) == 0) {
          server.set_loading(false);
          return;
        }
      } while (!stopping.WaitForNotificationWithTimeout(absl::Milliseconds(50)));
    });
  }
  waiter.Wait();
  stopping.Notify();
  if (loader.joinable()) loader.join();
  server.Stop();
  return 0;
}
