// Micro-benchmarks of the coordinator's per-request work: analyzer, rule-based decomposer,
// selector (from the registry's index, beside copying a snapshot as the old path did),
// heartbeats, and a ledger settlement beside a raw SQLite insert. Read them as ratios within
// one run, not absolute times. loom_bench measures the whole system.
//
//   build/bin/loom_micro_bench --benchmark_min_time=0.2
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/protocol.h"
#include "common/tokens.h"
#include "coordinator/mesh/model_selector.h"
#include "coordinator/mesh/registry.h"
#include "coordinator/analyzer/request_analyzer.h"
#include "coordinator/pipeline/task_decomposer.h"
#include "ledger/sqlite_ledger.h"

namespace loom {
namespace {

constexpr char kWorkedExample[] =
    "Translate this Python code to Rust and explain the key differences between the two "
    "implementations: def f(xs): return sum(xs)";

void BM_CountTokens(benchmark::State& state) {
  std::string text;
  for (int i = 0; i < 200; ++i) absl::StrAppend(&text, "the quick brown fox, jumps over ");
  for (auto _ : state) benchmark::DoNotOptimize(CountTokens(text));
  state.SetBytesProcessed(state.iterations() * text.size());
}
BENCHMARK(BM_CountTokens);

// `beats`, when given, receives one heartbeat per device (its lease filled in).
DeviceRegistry* RegistryWith(int devices, std::vector<v1::HeartbeatRequest>* beats = nullptr) {
  static SimulatedClock clock;
  auto* registry = new DeviceRegistry({}, &clock);
  for (int i = 0; i < devices; ++i) {
    v1::RegisterRequest r;
    r.mutable_protocol_version()->set_major(kProtocolMajor);
    r.set_device_id(absl::StrCat("dev-", i));
    r.set_provider_id("p");
    r.set_address("127.0.0.1:1");
    auto* m = r.add_models();
    m->set_name(i % 3 == 0 ? "qwen2.5-coder-7b" : i % 3 == 1 ? "llama-3.1-8b" : "mistral-7b");
    m->set_family(i % 3 == 0 ? "qwen-coder" : i % 3 == 1 ? "llama" : "mistral");
    r.mutable_load()->set_active(i % 4);
    r.mutable_load()->set_max_concurrency(4);
    auto lease = registry->Register(r);
    if (beats && lease.ok()) {
      v1::HeartbeatRequest& h = beats->emplace_back();
      h.set_device_id(r.device_id());
      h.set_lease_id(lease->lease_id());
      *h.mutable_load() = r.load();
    }
  }
  return registry;
}

// Baseline: the registry snapshot that every selection starts from.
void BM_RegistrySnapshot(benchmark::State& state) {
  DeviceRegistry* registry = RegistryWith(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(registry->Snapshot());
  delete registry;
}
BENCHMARK(BM_RegistrySnapshot)->Arg(10)->Arg(1000)->Arg(10000);

// The request path: selection straight from the registry's index, no snapshot.
void BM_SelectForCategoriesIndexed(benchmark::State& state) {
  DeviceRegistry* registry = RegistryWith(state.range(0));
  ModelSelector selector;
  for (auto _ : state) {
    benchmark::DoNotOptimize(selector.SelectForCategories(*registry, {v1::TASK_CATEGORY_CODE}, {}));
  }
  delete registry;
}
BENCHMARK(BM_SelectForCategoriesIndexed)->Arg(10)->Arg(1000)->Arg(10000);

void BM_SelectPassthroughIndexed(benchmark::State& state) {
  DeviceRegistry* registry = RegistryWith(state.range(0));
  ModelSelector selector;
  for (auto _ : state) {
    benchmark::DoNotOptimize(selector.SelectPassthrough(*registry, {.family = "llama"}, {}));
  }
  delete registry;
}
BENCHMARK(BM_SelectPassthroughIndexed)->Arg(10)->Arg(1000)->Arg(10000);

// A heartbeat that changes the device's load: lease check, expiry order and index re-keying.
void BM_HeartbeatIndexed(benchmark::State& state) {
  std::vector<v1::HeartbeatRequest> beats;
  DeviceRegistry* registry = RegistryWith(state.range(0), &beats);
  size_t i = 0;
  for (auto _ : state) {
    v1::HeartbeatRequest& h = beats[i++ % beats.size()];
    h.mutable_load()->set_active((h.load().active() + 1) % 4);
    benchmark::DoNotOptimize(registry->Heartbeat(h));
  }
  delete registry;
}
BENCHMARK(BM_HeartbeatIndexed)->Arg(10000);

// Arg 0: the trained classifier decides categories; arg 1: the lexicon alone (the baseline).
AnalyzerOptions AnalyzerFor(const benchmark::State& state) {
  AnalyzerOptions options;
  options.lexicon_only = state.range(0) == 1;
  return options;
}

void BM_AnalyzeWorkedExample(benchmark::State& state) {
  RequestAnalyzer analyzer(AnalyzerFor(state));
  v1::CompleteRequest request;
  auto* m = request.add_messages();
  m->set_role("user");
  m->set_content(kWorkedExample);
  for (auto _ : state) benchmark::DoNotOptimize(analyzer.Analyze(request, 512));
}
BENCHMARK(BM_AnalyzeWorkedExample)->Arg(0)->Arg(1);

// loom_bench's passthrough prompt: one short question.
void BM_AnalyzeShortQuestion(benchmark::State& state) {
  RequestAnalyzer analyzer(AnalyzerFor(state));
  v1::CompleteRequest request;
  auto* m = request.add_messages();
  m->set_role("user");
  m->set_content("What is the capital of Australia?");
  request.set_model("llama-3.1-8b");
  for (auto _ : state) benchmark::DoNotOptimize(analyzer.Analyze(request, 16));
}
BENCHMARK(BM_AnalyzeShortQuestion)->Arg(0)->Arg(1);

// A pasted document with an instruction: about 4 KB, of which the analyzer reads its window.
void BM_AnalyzePastedDocument(benchmark::State& state) {
  RequestAnalyzer analyzer(AnalyzerFor(state));
  std::string text = "Summarize the following report in three bullet points:\n\n";
  for (int i = 0; i < 40; ++i) {
    text += "The committee met on day " + std::to_string(i) +
            " and reviewed the budget, the staffing plan and the timeline for the new clinic.\n";
  }
  for (auto _ : state) benchmark::DoNotOptimize(analyzer.AnalyzeText(text, 512));
}
BENCHMARK(BM_AnalyzePastedDocument)->Arg(0)->Arg(1);

// The classifier alone (features + dot product + softmax) on the worked example.
void BM_ClassifierPredict(benchmark::State& state) {
  const CategoryModel& model = CategoryModel::Builtin();
  for (auto _ : state) benchmark::DoNotOptimize(model.Predict(kWorkedExample));
}
BENCHMARK(BM_ClassifierPredict);

void BM_DecomposeByRules(benchmark::State& state) {
  RequestAnalyzer analyzer(AnalyzerOptions{});
  v1::CompleteRequest request;
  auto* m = request.add_messages();
  m->set_role("user");
  m->set_content(kWorkedExample);
  const Analysis analysis = analyzer.Analyze(request, 512);
  for (auto _ : state) benchmark::DoNotOptimize(TaskDecomposer::FromRules(analysis, 256));
}
BENCHMARK(BM_DecomposeByRules);

void BM_SnapshotAndSelectPassthrough(benchmark::State& state) {
  DeviceRegistry* registry = RegistryWith(state.range(0));
  ModelSelector selector;
  for (auto _ : state) {
    benchmark::DoNotOptimize(selector.SelectPassthrough(registry->Snapshot(), {.family = "llama"}, {}));
  }
  delete registry;
}
BENCHMARK(BM_SnapshotAndSelectPassthrough)->Arg(10)->Arg(1000)->Arg(10000);

// Baseline: one raw SQLite insert transaction with the same durability as the ledger.
void BM_RawSqliteInsert(benchmark::State& state) {
  sqlite3* db = nullptr;
  sqlite3_open(":memory:", &db);
  sqlite3_exec(db, "CREATE TABLE t(a TEXT, b INTEGER)", nullptr, nullptr, nullptr);
  int64_t i = 0;
  for (auto _ : state) {
    sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    std::string sql = absl::StrCat("INSERT INTO t VALUES('r", i++, "', 1)");
    sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  sqlite3_close(db);
}
BENCHMARK(BM_RawSqliteInsert);

// A settlement as the coordinator makes one: one record, paid from a funded client (in
// :memory:, so no disk). With `reserve`, the reservation before it too.
void LedgerSettle(benchmark::State& state, bool reserve) {
  auto ledger = SqliteLedger::Open({.path = ":memory:"});
  if (!ledger.ok() || !(*ledger)->Grant("client:c", int64_t{1} << 50, "bench").ok()) {
    state.SkipWithError("ledger setup failed");
    return;
  }
  int64_t i = 0;
  v1::ContributionRecord r;
  r.set_sub_task_id("t");
  r.set_device_id("d");
  r.set_provider_id("p");
  r.set_model("m");
  r.set_token_count(64);
  r.set_credits_micro(448);
  for (auto _ : state) {
    std::string id = absl::StrCat("req-", i++);
    r.set_request_id(id);
    if (reserve && !(*ledger)->Reserve(id, "client:c", 1000, absl::Minutes(1)).ok()) {
      state.SkipWithError("reserve failed");
      return;
    }
    if (!(*ledger)->Settle({id, "client:c", {r}}).ok()) {
      state.SkipWithError("settle failed");
      return;
    }
  }
}
void BM_LedgerSettle(benchmark::State& state) { LedgerSettle(state, false); }
BENCHMARK(BM_LedgerSettle);
void BM_LedgerReserveAndSettle(benchmark::State& state) { LedgerSettle(state, true); }
BENCHMARK(BM_LedgerReserveAndSettle);

}  // namespace
}  // namespace loom

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);  // registering 10,000 devices logs 10,000 lines
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
