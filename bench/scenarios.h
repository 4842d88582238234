// File: bench/scenarios.h
// loom_bench's scenarios, one file each (bench/scenario_*.cc). Each measures one thing beside
// its baseline in the same run, writes its figures into `r->j` under its own key and its table
// lines through Line(), and prints each target of the issues beside its measurement as met or
// MISSED. None fails on a time.
#ifndef LOOM_BENCH_SCENARIOS_H_
#define LOOM_BENCH_SCENARIOS_H_

#include "bench/harness.h"
#include "bench/mesh.h"
#include "coordinator/mesh/registry.h"
#include "loom/v1/registry.pb.h"

namespace loom::bench {

// 1-2. The raw hop, the bare proxies and passthrough ("raw_hop", "bare_proxy",
// "passthrough"); returns the passthrough latency.
Percentiles MeasureHops(const BenchConfig& config, const Mesh& mesh, Results* r, double fsync_us);
// 3. Compiled requests ("compiled"); needs MeasureHops's raw hop first.
void MeasureCompiled(const BenchConfig& config, const Mesh& mesh, Results* r, double fsync_us);
// 4. The SQLite ledger beside raw inserts ("ledger").
void MeasureLedger(const BenchConfig& config, Results* r);
// 5a. Selection while devices heartbeat, in process ("selector": p50, p99, policies).
void MeasureSelector(const BenchConfig& config, Results* r);
// 5b, 6. The coordinator's heartbeat CPU ("selector": heartbeat fields) and RSS ("memory").
void MeasureHeartbeatsAndMemory(const BenchConfig& config, const Mesh& mesh, Results* r);
// 7. PostgreSQL beside SQLite ("engines"); `sqlite_pass` is MeasureHops's figure.
void MeasureEngineColumn(const BenchConfig& config, const Percentiles& sqlite_pass, Results* r);

// Device i of the fake mesh the selector and heartbeat runs register (six models, four regions,
// 500 providers at three trust tiers), and the registry options that give them trust and carbon.
v1::RegisterRequest FakeDevice(int i);
RegistryOptions FakeMeshOptions();

}  // namespace loom::bench

#endif  // LOOM_BENCH_SCENARIOS_H_
