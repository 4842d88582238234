// A structure-aware fuzzer for compiled plans, end to end through RequestRunner: the bytes
// choose a decomposer model's answer (a sub-task graph of 1-9 sub-tasks with fuzzed ids,
// prompts, categories, order and dependencies: self, forward, missing and cyclic ones
// included; raw or valid UTF-8), the prompt, and how each device behaves (its text, invalid
// UTF-8 included, and whether it then fails or is busy). The runner decomposes with that
// answer (or falls back to the rules), runs the graph on the fake devices with retries, has
// it synthesized, and settles. Whatever the bytes:
//  - the runner returns an answer or a documented error, and never aborts;
//  - an answer and every streamed event's text are valid UTF-8; its records' weights sum to
//    1 and their credits to what the client was charged, exactly what left its balance;
//  - a failed request charged nothing, and the ledger verifies.
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/protocol.h"
#include "common/utf8.h"
#include "coordinator/mesh/model_selector.h"
#include "coordinator/mesh/registry.h"
#include "coordinator/pipeline/request_runner.h"
#include "fuzz/fuzz_check.h"
#include "ledger/sqlite_ledger.h"
#include "tests/fakes/fake_device_client.h"

namespace {

constexpr int64_t kGranted = 1'000'000'000'000;

// Reads the fuzz input as a sequence of choices; past the end every choice is 0.
class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t Byte() { return at_ < size_ ? data_[at_++] : 0; }
  bool Flag() { return Byte() & 1; }
  std::string String(size_t max) {
    const size_t n = std::min<size_t>(Byte() % (max + 1), size_ - std::min(at_, size_));
    std::string s(reinterpret_cast<const char*>(data_) + std::min(at_, size_), n);
    at_ += n;
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
};

// A JSON string literal holding `raw` as it is (only quotes, backslashes and control bytes
// escaped): invalid UTF-8 reaches the parser the way a model could send it.
std::string Literal(const std::string& raw) {
  std::string out = "\"";
  for (unsigned char c : raw) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      absl::StrAppend(&out, "\\u00", c < 0x10 ? "0" : "", absl::Hex(c));
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

const char* const kCategories[] = {"code", "reasoning", "creative", "factual", "math",
                                   "translation", "summarization", "general", "cooking"};

struct Mesh {
  Mesh() {
    ledger = *loom::SqliteLedger::Open({.path = ":memory:", .clock = &clock});
    (void)ledger->Grant(loom::ClientAccount("fuzz"), kGranted, "fuzz");
    const char* const families[] = {"llama", "qwen", "mistral"};
    Add("planner", "planner-1b", "llama", 1);
    for (int i = 0; i < 3; ++i) Add(absl::StrCat("w", i), absl::StrCat(families[i], "-8b"), families[i], 8);
    loom::RunnerOptions options;
    options.attempts.max_attempts = 2;
    options.attempts.attempt_timeout = absl::Seconds(5);
    options.decomposer.mode = loom::DecomposerOptions::Mode::kModel;
    options.decomposer.model = "planner-1b";
    runner = std::make_unique<loom::RequestRunner>(options, &registry, &selector, &devices,
                                                   ledger.get(), &clock);
  }
  void Add(const std::string& id, const std::string& model, const std::string& family,
           double params) {
    loom::v1::RegisterRequest r;
    r.mutable_protocol_version()->set_major(loom::kProtocolMajor);
    r.set_device_id(id);
    r.set_provider_id("prov-" + id);
    r.set_address(id + ":1");
    auto* m = r.add_models();
    m->set_name(model);
    m->set_family(family);
    m->set_parameters_b(params);
    m->add_capabilities("continue");
    r.mutable_load()->set_max_concurrency(64);
    r.set_simulated(false);  // so that the decomposer asks the planner model
    FUZZ_CHECK(registry.Register(r).ok());
  }

  loom::SimulatedClock clock;
  loom::DeviceRegistry registry{{}, &clock};
  loom::ModelSelector selector;
  loom::FakeDeviceClient devices;
  std::unique_ptr<loom::SqliteLedger> ledger;
  std::unique_ptr<loom::RequestRunner> runner;
};

Mesh& TheMesh() {
  static Mesh* mesh = new Mesh();
  return *mesh;
}

loom::FakeDeviceClient::Script Behaviour(Bytes& in) {
  loom::FakeDeviceClient::Script s;
  s.chunks.clear();
  const int chunks = in.Byte() % 4;
  for (int i = 0; i < chunks; ++i) s.chunks.push_back(in.String(12));
  if (s.chunks.empty()) s.chunks = {" ok"};
  switch (in.Byte() % 6) {
    case 0: s.status = absl::UnavailableError("fuzzed: device died"); break;
    case 1: s.status = absl::ResourceExhaustedError("fuzzed: busy"); break;
    case 2: s.finish_reason = "length"; break;
    default: break;
  }
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Mesh& mesh = TheMesh();
  Bytes in(data, size);
  // The planner's answer: a graph of sub-tasks.
  const bool sanitize = in.Flag();
  auto text = [&](size_t max) {
    std::string s = in.String(max);
    return sanitize ? loom::ToValidUtf8(s) : s;
  };
  const int n = 1 + in.Byte() % 9;
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) ids.push_back(in.Flag() ? text(6) : absl::StrCat("t", i));
  std::string plan = "{\"sub_tasks\":[";
  for (int i = 0; i < n; ++i) {
    absl::StrAppend(&plan, i ? "," : "", "{\"id\":", Literal(ids[i]), ",\"prompt\":",
                    Literal(text(40)), ",\"category\":\"",
                    kCategories[in.Byte() % std::size(kCategories)], "\",\"order_index\":",
                    in.Byte() % 10, ",\"depends_on\":[");
    const int deps = in.Byte() % 3;
    for (int k = 0; k < deps; ++k) {
      const uint8_t pick = in.Byte();
      const std::string dep = pick % 7 == 6 ? "nowhere" : ids[pick % ids.size()];
      absl::StrAppend(&plan, k ? "," : "", Literal(dep));
    }
    plan += "]}";
  }
  absl::StrAppend(&plan, "],\"synthesis_prompt\":", Literal(text(30)), "}");
  loom::FakeDeviceClient::Script planner;
  planner.chunks = {plan};
  if (in.Byte() % 8 == 0) planner.status = absl::UnavailableError("fuzzed: planner died");
  mesh.devices.Set("planner:1", planner);
  for (int i = 0; i < 3; ++i) mesh.devices.Set(absl::StrCat("w", i, ":1"), Behaviour(in));

  loom::v1::CompleteRequest request;
  request.set_client_id("fuzz");
  request.set_mode(loom::v1::PLAN_KIND_COMPILED);
  auto* m = request.add_messages();
  m->set_role("user");
  m->set_content(loom::ToValidUtf8(absl::StrCat("Do this. ", in.String(60), " Also that.")));
  const bool stream = in.Flag();
  std::vector<loom::v1::CompleteEvent> events;
  const int64_t before = *mesh.ledger->Balance(loom::ClientAccount("fuzz"));
  loom::Cancellation cancel;
  absl::StatusOr<loom::v1::CompleteResponse> r = mesh.runner->Run(
      request, absl::InfiniteFuture(),
      stream ? loom::EventSink([&events](const loom::v1::CompleteEvent& e) { events.push_back(e); })
             : loom::EventSink(),
      &cancel);
  const int64_t after = *mesh.ledger->Balance(loom::ClientAccount("fuzz"));
  for (const auto& e : events) {
    if (e.has_output()) FUZZ_CHECK(loom::IsValidUtf8(e.output().text()));
    if (e.has_plan()) {
      for (const auto& t : e.plan().sub_tasks()) FUZZ_CHECK(loom::IsValidUtf8(t.prompt()));
    }
  }
  if (r.ok()) {
    FUZZ_CHECK(loom::IsValidUtf8(r->output()));
    int64_t credits = 0;
    double weights = 0;
    for (const auto& c : r->contributions()) {
      credits += c.credits_micro();
      weights += c.weight();
    }
    if (r->contributions_size() > 0) FUZZ_CHECK(std::fabs(weights - 1) < 1e-6);
    FUZZ_CHECK(credits == r->cost_micro());
    FUZZ_CHECK(before - after == r->cost_micro());
  } else {
    const absl::StatusCode code = r.status().code();
    FUZZ_CHECK(code == absl::StatusCode::kUnavailable ||
               code == absl::StatusCode::kResourceExhausted ||
               code == absl::StatusCode::kInvalidArgument ||
               code == absl::StatusCode::kDeadlineExceeded);
    FUZZ_CHECK(loom::IsValidUtf8(r.status().message()));
    FUZZ_CHECK(before == after);
  }
  static int runs = 0;
  if (++runs % 128 == 0) FUZZ_CHECK(mesh.ledger->Verify()->ok);
  return 0;
}
