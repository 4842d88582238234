// openai_standin: the test stand-in OpenAI-compatible server (tests/fakes/openai_standin.h) as
// a process, so integration tests can put real loom-worker processes in front of it.
//
//   openai_standin --models=qwen2.5-coder-standin,llama-standin --ready_file=PATH
#include <csignal>
#include <fstream>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "common/ready_file.h"
#include "common/shutdown.h"
#include "tests/fakes/openai_standin.h"

ABSL_FLAG(std::string, models, "standin", "Comma-separated model names to serve.");
ABSL_FLAG(std::string, ready_file, "", "Write {\"base_url\": ...} here once serving.");

int main(int argc, char** argv) {
  loom::BlockShutdownSignals();
  absl::ParseCommandLine(argc, argv);
  std::vector<std::string> models = absl::StrSplit(absl::GetFlag(FLAGS_models), ',');
  loom::OpenAIStandIn server(models);
  const std::string base_url = server.Start();
  if (!absl::GetFlag(FLAGS_ready_file).empty()) {
    (void)loom::WriteFileAtomically(absl::GetFlag(FLAGS_ready_file),
                                    absl::StrCat("{\"base_url\": \"", base_url, "\"}\n"));
  }
  loom::ShutdownWaiter waiter;
  waiter.Wait();
  server.Stop();
  return 0;
}
