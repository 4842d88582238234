// File: tests/integration/mesh_fixture.h
// A test fixture that runs a real mesh on loopback: loom-coordinator and loom-worker processes
// on port 0 with --ready_file, a fresh ledger in a temp dir, and helpers that drive the loom
// and loom-ledger CLIs. Logs of every process are printed when a test fails.
//
// Security: by default the mesh is plaintext and workers join with join tokens (issued here
// from the coordinator's secret). A test that sets tls_ = true before StartCoordinator runs
// everything over mutual TLS with certificates from deploy/dev-certs.sh.
#ifndef LOOM_TESTS_INTEGRATION_MESH_FIXTURE_H_
#define LOOM_TESTS_INTEGRATION_MESH_FIXTURE_H_

#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/join_token.h"
#include "gtest/gtest.h"
#include "tests/integration/process_harness.h"

namespace loom::testing {

using json = nlohmann::json;

// Short heartbeats so expiry and re-registration happen within a test's time.
inline constexpr char kHeartbeatMs[] = "--heartbeat_interval_ms=100";
inline constexpr char kCurlPath[] = "/usr/bin/curl";

class MeshFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    db_ = dir_ + "/loom.db";
  }

  void TearDown() override {
    if (HasFailure()) {
      if (coordinator_.process) std::cerr << "coordinator log:\n" << coordinator_.process->Log();
      for (auto& [name, w] : workers_) {
        if (w.process) std::cerr << name << " log:\n" << w.process->Log();
      }
    }
    workers_.clear();
    coordinator_ = {};
  }

  std::string certs() const { return dir_ + "/certs"; }
  std::string secret_file() const { return dir_ + "/join.secret"; }

  // Makes the dev CA and certificates for these devices (DEVICE[:PROVIDER]) in certs().
  void MakeCerts(const std::vector<std::string>& devices) {
    std::vector<std::string> args = {certs()};
    args.insert(args.end(), devices.begin(), devices.end());
    CommandResult r = RunCommand(std::string(LOOM_SOURCE_DIR) + "/deploy/dev-certs.sh", args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // How the coordinator is told to secure itself.
  std::vector<std::string> CoordinatorSecurityArgs() {
    if (tls_) {
      return {"--tls_cert=" + certs() + "/coordinator.crt", "--tls_key=" + certs() + "/coordinator.key",
              "--tls_client_ca=" + certs() + "/ca.crt"};
    }
    return {"--plaintext", "--join_secret_file=" + secret_file()};
  }

  // A worker's credentials for `device` paid into `provider`.
  std::vector<std::string> WorkerSecurityArgs(const std::string& device, const std::string& provider) {
    if (tls_) {
      MakeCerts({device + ":" + provider});
      return {"--tls_cert=" + certs() + "/" + device + ".crt",
              "--tls_key=" + certs() + "/" + device + ".key", "--tls_ca=" + certs() + "/ca.crt"};
    }
    auto secret = LoadOrCreateJoinSecret(secret_file());
    EXPECT_TRUE(secret.ok()) << secret.status();
    return {"--plaintext", "--join_token=" + IssueJoinToken(secret.value_or(""), device, provider)};
  }

  // The loom CLI's credentials.
  std::vector<std::string> ClientSecurityArgs() {
    if (tls_) {
      return {"--tls_ca=" + certs() + "/ca.crt", "--tls_cert=" + certs() + "/client.crt",
              "--tls_key=" + certs() + "/client.key"};
    }
    return {"--plaintext"};
  }

  // Runs the loom CLI with the mesh's client credentials first.
  CommandResult Loom(std::vector<std::string> args) {
    std::vector<std::string> all = ClientSecurityArgs();
    all.insert(all.end(), args.begin(), args.end());
    return RunCommand("loom", all);
  }

  void StartCoordinator(const std::string& listen = "127.0.0.1:0",
                        std::vector<std::string> extra = {}) {
    std::string error;
    if (tls_) MakeCerts({});
    std::vector<std::string> args = {"--grpc_listen=" + listen, "--ledger_db=" + db_, kHeartbeatMs,
                                     "--missed_heartbeats=3", "--attempt_timeout_ms=10000",
                                     "--http_listen=127.0.0.1:0", "--allow_anonymous=anonymous"};
    for (std::string& a : CoordinatorSecurityArgs()) args.push_back(std::move(a));
    args.insert(args.end(), extra.begin(), extra.end());
    coordinator_ = StartDaemon("loom-coordinator", dir_, "coordinator", args, &error);
    ASSERT_TRUE(coordinator_.process) << error;
    // Requests are charged to client:anonymous; give it credits (idempotent across restarts).
    CommandResult grant = RunCommand(
        "loom-ledger", {"--db=" + db_, "grant", "client:anonymous", "1000", "--reference=test-setup"});
    ASSERT_EQ(grant.exit_code, 0) << grant.err;
    // ListDevices needs a key like every call: an unfunded one for the fixture's own looks
    // (a coordinator started without anonymous use would refuse Devices() otherwise).
    if (observer_key_.empty()) {
      CommandResult key = RunCommand("loom-ledger", {"--db=" + db_, "keys", "create", "--client=observer"});
      ASSERT_EQ(key.exit_code, 0) << key.err;
      observer_key_ = std::string(absl::StripAsciiWhitespace(key.out));
    }
  }

  void StartWorker(const std::string& device, const std::string& model,
                   std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--coordinator=" + coordinator_.address,
                                     "--device_id=" + device, "--provider_id=prov-" + device,
                                     "--model=" + model, "--sim_output_tokens=24"};
    for (std::string& a : WorkerSecurityArgs(device, "prov-" + device)) args.push_back(std::move(a));
    args.insert(args.end(), extra.begin(), extra.end());
    std::string error;
    workers_[device] = StartDaemon("loom-worker", dir_, device, args, &error);
    ASSERT_TRUE(workers_[device].process) << error;
  }

  // Every device the coordinator lists, in any state.
  std::set<std::string> Devices() {
    CommandResult r = Loom({"--coordinator=" + coordinator_.address, "--api_key=" + observer_key_,
                            "devices", "--json"});
    std::set<std::string> ids;
    if (r.exit_code != 0) return ids;
    json devices = json::parse(r.out, nullptr, false);
    if (devices.is_discarded()) return ids;
    for (const auto& d : devices.value("devices", json::array())) {
      ids.insert(d["deviceId"].get<std::string>());
    }
    return ids;
  }

  bool WaitForDevices(const std::set<std::string>& expected) {
    return WaitFor([&] { return Devices() == expected; }, absl::Seconds(20));
  }

  json AskJson(const std::string& prompt, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--coordinator=" + coordinator_.address, "ask", prompt,
                                     "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    CommandResult r = Loom(args);
    EXPECT_EQ(r.exit_code, 0) << r.err << MeshLogs();
    json parsed = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(parsed.is_discarded()) << r.out;
    return parsed;
  }

  // The tails of the coordinator's and workers' logs, for a failure message: a failure on a
  // loaded machine must say what the daemons saw.
  std::string MeshLogs() {
    auto tail = [](const std::string& log) {
      return log.size() > 4000 ? log.substr(log.size() - 4000) : log;
    };
    std::string out;
    if (coordinator_.process) out += "\n--- coordinator log ---\n" + tail(coordinator_.process->Log());
    for (auto& [id, worker] : workers_) {
      if (worker.process) out += "\n--- worker " + id + " log ---\n" + tail(worker.process->Log());
    }
    return out;
  }

  struct HttpResult {
    int status = 0;
    std::string headers, body;
  };

  // curl -s -D headers against the coordinator's HTTP API; the status is parsed from the
  // header block.
  HttpResult Curl(const std::string& method, const std::string& path, const std::string& body,
                  const std::string& key = "", std::vector<std::string> extra = {}) {
    const std::string headers_file = dir_ + "/headers";
    std::vector<std::string> args = {"-s", "-D", headers_file, "-X", method,
                                     "http://" + coordinator_.http + path};
    if (!body.empty()) {
      const std::string body_file = dir_ + "/body.json";
      std::ofstream(body_file) << body;
      args.insert(args.end(), {"-H", "Content-Type: application/json", "--data-binary", "@" + body_file});
    }
    if (!key.empty()) args.insert(args.end(), {"-H", "Authorization: Bearer " + key});
    args.insert(args.end(), extra.begin(), extra.end());
    CommandResult r = RunCommand(kCurlPath, args);
    HttpResult out;
    out.body = r.out;
    out.headers = ReadFile(headers_file);
    // The last status line counts (curl may first get "100 Continue" for a large body).
    const size_t last = out.headers.rfind("HTTP/");
    if (last != std::string::npos) {
      std::vector<std::string> line = absl::StrSplit(
          out.headers.substr(last, out.headers.find('\r', last) - last), ' ');
      if (line.size() < 2 || !absl::SimpleAtoi(line[1], &out.status)) out.status = 0;
    }
    return out;
  }

  json LedgerRecords(const std::string& request_id) {
    CommandResult r = RunCommand("loom-ledger", {"--db=" + db_, "records", "--request=" + request_id,
                                          "--format=json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out, nullptr, false);
  }

  bool tls_ = false;
  std::string dir_;
  std::string db_;
  std::string observer_key_;  // an unfunded key for the fixture's ListDevices calls
  Daemon coordinator_;
  std::map<std::string, Daemon> workers_;
};

}  // namespace loom::testing

#endif  // LOOM_TESTS_INTEGRATION_MESH_FIXTURE_H_
