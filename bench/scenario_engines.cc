// File: bench/scenario_engines.cc
// Scenario 7: the ledger engines side by side, against a real PostgreSQL server.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/scenarios.h"
#include "bench/engine_measure.h"
#include "loom/v1/orchestrator.grpc.pb.h"
#include "tests/integration/postgres_server.h"

namespace loom::bench {
// The ledger engines side by side (issue 19): settlements per second on PostgreSQL with one
// and two coordinators beside raw PostgreSQL inserts of the same rows and beside SQLite
// (bench/engine_measure.h), and the passthrough p50 of a whole mesh whose coordinator settles
// into each engine (`sqlite_p50` is the passthrough run's figure on SQLite).
void MeasureEngineColumn(const BenchConfig& config, const Percentiles& sqlite_pass, Results* r) {
  testing::PostgresServer pg;
  if (!pg.Start()) {
    Line(r, "engines: PostgreSQL did not start (" + pg.error() + "); run deploy/setup.sh");
    return;
  }
  const EngineFigures f = MeasureEngines(pg, config.engine_settlements, 16, 32);
  if (pg.CreateDatabase("mesh").empty()) Die("cannot create the mesh database: " + pg.error());
  Percentiles pass;
  {
    const std::string mesh_dir = config.dir + "/postgresql-mesh";
    std::filesystem::create_directories(mesh_dir);
    Mesh mesh = StartMesh(config, mesh_dir,
                          absl::StrCat("postgresql://loom@127.0.0.1:", pg.port(), "/mesh"));
    auto coordinator = v1::Orchestrator::NewStub(
        grpc::CreateChannel(mesh.coordinator_address(), grpc::InsecureChannelCredentials()));
    v1::CompleteRequest request;
    *request.add_messages() = User(kPassthroughPrompt);
    request.set_model(kPinnedModel);
    request.set_max_tokens(kAnswerTokens);
    pass = Of(Sequential(config.requests, [&] {
      grpc::ClientContext context;
      context.set_deadline(In(10));
      v1::CompleteResponse response;
      grpc::Status status = coordinator->Complete(&context, request, &response);
      if (!status.ok()) Die("passthrough on PostgreSQL failed: " + status.error_message());
    }));
  }
  r->j["engines"] = {{"raw_postgresql_per_s", f.raw_postgresql},
                     {"postgresql_1_coordinator_per_s", f.postgresql_1},
                     {"postgresql_2_coordinators_per_s", f.postgresql_2},
                     {"sqlite_per_s", f.sqlite},
                     {"passthrough_p50_us", {{"sqlite", sqlite_pass.p50}, {"postgresql", pass.p50}}},
                     {"passthrough_p99_us", {{"sqlite", sqlite_pass.p99}, {"postgresql", pass.p99}}}};
  Line(r, "engines (16 threads, 256 clients, durable)   settlements/s     passthrough p50    p99");
  Line(r, absl::StrFormat("  raw PostgreSQL inserts, same rows          %8.0f", f.raw_postgresql));
  Line(r, absl::StrFormat("  PostgreSQL ledger, 1 coordinator           %8.0f (%.2fx raw)  %7.0f  %7.0f",
                          f.postgresql_1, f.postgresql_1 / f.raw_postgresql, pass.p50, pass.p99));
  Line(r, absl::StrFormat("  PostgreSQL ledger, 2 coordinators          %8.0f (%.2fx one)",
                          f.postgresql_2, f.postgresql_2 / f.postgresql_1));
  Line(r, absl::StrFormat("  SQLite ledger                              %8.0f              %7.0f  %7.0f",
                          f.sqlite, sqlite_pass.p50, sqlite_pass.p99));
  Line(r, absl::StrFormat("  target PostgreSQL >= 0.5 x raw: %s; 2 coordinators >= 0.9 x one: %s",
                          Verdict(f.postgresql_1 >= 0.5 * f.raw_postgresql),
                          Verdict(f.postgresql_2 >= 0.9 * f.postgresql_1)));
}

}  // namespace loom::bench
