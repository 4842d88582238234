// Several coordinators on one PostgreSQL ledger (issue 19): a real PostgreSQL server started
// for the test (postgres_server.h), two loom-coordinator processes sharing it, each with its own
// workers, clients sending to either. Any coordinator serves any client and settles into the
// same books; a request id served by one is replayed, never run again, by the other; killing
// one under load loses and doubles nothing, and its reservations expire.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/join_token.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/postgres_server.h"
#include "tests/integration/process_harness.h"

namespace loom::testing {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

class ScaleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    ASSERT_TRUE(pg_.Start()) << pg_.error();
    ASSERT_FALSE(pg_.CreateDatabase("loom").empty()) << pg_.error();
    ledger_ = absl::StrCat("postgresql://loom@127.0.0.1:", pg_.port(), "/loom");
  }
  void TearDown() override {
    if (HasFailure()) {
      for (auto& [name, d] : daemons_) {
        if (d.process) std::cerr << "--- " << name << " log ---\n" << d.process->Log();
      }
    }
    daemons_.clear();
  }

  // A coordinator named `instance` on the shared ledger; `listen` to come back on a port.
  Daemon& StartCoordinator(const std::string& instance, const std::string& listen = "127.0.0.1:0",
                           std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--grpc_listen=" + listen, "--http_listen=127.0.0.1:0",
                                     "--ledger=" + ledger_, "--instance_id=" + instance,
                                     "--plaintext", "--join_secret_file=" + dir_ + "/join.secret",
                                     "--heartbeat_interval_ms=100", "--missed_heartbeats=3"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::string error;
    daemons_[instance] = StartDaemon("loom-coordinator", dir_, instance, args, &error);
    EXPECT_TRUE(daemons_[instance].process) << error;
    return daemons_[instance];
  }

  // A worker registered with every coordinator in `coordinators` (comma-separated names).
  void StartWorker(const std::string& device, const std::string& coordinators,
                   std::vector<std::string> extra = {}) {
    auto secret = LoadOrCreateJoinSecret(dir_ + "/join.secret");
    ASSERT_TRUE(secret.ok()) << secret.status();
    std::vector<std::string> addresses;
    for (absl::string_view name : absl::StrSplit(coordinators, ',')) {
      addresses.push_back(daemons_[std::string(name)].address);
    }
    std::vector<std::string> args = {
        "--coordinator=" + absl::StrJoin(addresses, ","), "--device_id=" + device,
        "--provider_id=prov-" + device, "--model=llama-3.1-8b", "--sim_output_tokens=16",
        "--plaintext", "--join_token=" + IssueJoinToken(*secret, device, "prov-" + device)};
    args.insert(args.end(), extra.begin(), extra.end());
    std::string error;
    daemons_[device] = StartDaemon("loom-worker", dir_, device, args, &error);
    ASSERT_TRUE(daemons_[device].process) << error;
  }

  // The device as `coordinator` lists it (null when it does not).
  json Device(const std::string& coordinator, const std::string& key, const std::string& device) {
    CommandResult r = RunCommand("loom", {"--plaintext", "--coordinator=" + daemons_[coordinator].address,
                                          "--api_key=" + key, "devices", "--json"});
    json all = json::parse(r.out, nullptr, false);
    if (r.exit_code != 0 || all.is_discarded()) return nullptr;
    for (const auto& d : all.value("devices", json::array())) {
      if (d.value("deviceId", "") == device) return d;
    }
    return nullptr;
  }

  CommandResult Ledger(std::vector<std::string> args) {
    args.insert(args.begin(), "--ledger=" + ledger_);
    return RunCommand("loom-ledger", args);
  }

  std::string NewKey(const std::string& client, const std::string& credits) {
    CommandResult key = Ledger({"keys", "create", "--client=" + client});
    EXPECT_EQ(key.exit_code, 0) << key.err;
    CommandResult grant = Ledger({"grant", "client:" + client, credits, "--reference=grant-" + client});
    EXPECT_EQ(grant.exit_code, 0) << grant.err;
    return std::string(absl::StripAsciiWhitespace(key.out));
  }

  // (balance, available) of an account, in micro-credits.
  std::pair<int64_t, int64_t> Balance(const std::string& account) {
    CommandResult r = Ledger({"balance", account, "--format=json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    json j = json::parse(r.out, nullptr, false);
    if (j.is_discarded()) return {-1, -1};
    return {JsonInt64(j, "balanceMicro"), JsonInt64(j, "availableMicro")};
  }

  bool HasDevice(const std::string& coordinator, const std::string& key, const std::string& device) {
    CommandResult r = RunCommand("loom", {"--plaintext", "--coordinator=" + daemons_[coordinator].address,
                                          "--api_key=" + key, "devices", "--json"});
    return r.exit_code == 0 && absl::StrContains(r.out, "\"" + device + "\"");
  }

  struct Http {
    int status = 0;
    std::string headers, body;
  };
  Http Chat(const std::string& coordinator, const std::string& key, const std::string& prompt,
            const std::string& request_id = "") {
    return ChatAt(daemons_[coordinator].http, key, prompt, request_id, coordinator);
  }
  // Thread-safe when each caller's `tag` differs (it names the request's files).
  Http ChatAt(const std::string& http, const std::string& key, const std::string& prompt,
              const std::string& request_id, const std::string& tag) {
    const std::string body_file = dir_ + "/body-" + tag + ".json";
    std::ofstream(body_file) << json{{"model", "loom-auto"},
                                     {"messages", {{{"role", "user"}, {"content", prompt}}}}}
                                    .dump();
    std::vector<std::string> args = {"-s", "-D", dir_ + "/headers-" + tag, "-X", "POST",
                                     "http://" + http + "/v1/chat/completions",
                                     "-H", "Content-Type: application/json", "-H",
                                     "Authorization: Bearer " + key, "--data-binary", "@" + body_file};
    if (!request_id.empty()) args.insert(args.end(), {"-H", "X-Request-Id: " + request_id});
    CommandResult r = RunCommand("/usr/bin/curl", args);
    Http out;
    out.body = r.out;
    out.headers = absl::AsciiStrToLower(ReadFile(dir_ + "/headers-" + tag));
    const size_t at = out.headers.rfind("http/");
    if (at != std::string::npos) {
      std::vector<std::string> line = absl::StrSplit(out.headers.substr(at, 16), ' ');
      if (line.size() < 2 || !absl::SimpleAtoi(line[1], &out.status)) out.status = 0;
    }
    return out;
  }

  void ExpectBooksVerify() {
    CommandResult verify = Ledger({"verify"});
    EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
    // Double entry over everything both coordinators wrote.
    CommandResult accounts = Ledger({"accounts", "--format=json"});
    ASSERT_EQ(accounts.exit_code, 0) << accounts.err;
    int64_t sum = 0, moved = 0;
    const json all = json::parse(accounts.out);
    for (const auto& a : all) {
      ASSERT_TRUE(a.contains("balanceMicro")) << a.dump();
      sum += JsonInt64(a, "balanceMicro");
      moved += JsonInt64(a, "balanceMicro") != 0;
    }
    // Not vacuous: the mint, a client and providers hold money.
    EXPECT_GE(moved, 3) << accounts.out;
    EXPECT_EQ(sum, 0) << accounts.out;
  }

  PostgresServer pg_;
  std::string dir_, ledger_;
  std::map<std::string, Daemon> daemons_;
};

TEST_F(ScaleTest, AnyCoordinatorServesAnyClientAndARequestIdIsServedOnceAcrossThem) {
  StartCoordinator("coord-a", "127.0.0.1:0", {"--outcomes_refresh_ms=200"});
  StartCoordinator("coord-b", "127.0.0.1:0", {"--outcomes_refresh_ms=200"});
  StartWorker("dev-a", "coord-a");
  StartWorker("dev-b", "coord-b");
  const std::string key = NewKey("alice", "10");
  ASSERT_TRUE(WaitFor([&] { return HasDevice("coord-a", key, "dev-a"); }, absl::Seconds(20)));
  ASSERT_TRUE(WaitFor([&] { return HasDevice("coord-b", key, "dev-b"); }, absl::Seconds(20)));

  Http first = Chat("coord-a", key, "What is the capital of Peru?", "alice-job-1");
  ASSERT_EQ(first.status, 200) << first.body;
  const int64_t cost = json::parse(first.body)["loom"]["cost_micro"];
  EXPECT_GT(cost, 0);
  EXPECT_EQ(Balance("client:alice").first, 10'000'000 - cost);

  // The same id on the other coordinator: the first answer, not a second run or charge.
  Http replay = Chat("coord-b", key, "What is the capital of Peru?", "alice-job-1");
  ASSERT_EQ(replay.status, 200) << replay.body;
  EXPECT_THAT(replay.headers, HasSubstr("idempotent-replayed: true"));
  EXPECT_EQ(json::parse(replay.body)["choices"][0]["message"]["content"],
            json::parse(first.body)["choices"][0]["message"]["content"]);
  EXPECT_EQ(Balance("client:alice").first, 10'000'000 - cost);

  // A new request on B is B's work, paid from the same account.
  Http second = Chat("coord-b", key, "What is the capital of Chile?");
  ASSERT_EQ(second.status, 200) << second.body;
  const int64_t cost2 = json::parse(second.body)["loom"]["cost_micro"];
  EXPECT_EQ(Balance("client:alice").first, 10'000'000 - cost - cost2);
  CommandResult payouts = Ledger({"payouts", "--format=json"});
  ASSERT_EQ(payouts.exit_code, 0) << payouts.err;
  EXPECT_THAT(payouts.out, HasSubstr("prov-dev-a"));
  EXPECT_THAT(payouts.out, HasSubstr("prov-dev-b"));

  // A verdict given on B about the request A ran is one verdict for the whole mesh, and what
  // it teaches reaches A through the ledger.
  auto loom = [&](const std::string& coordinator, std::vector<std::string> args) {
    args.insert(args.begin(), {"--plaintext", "--coordinator=" + daemons_[coordinator].address,
                               "--api_key=" + key});
    return RunCommand("loom", args);
  };
  CommandResult rated = loom("coord-b", {"feedback", "alice-job-1", "good"});
  ASSERT_EQ(rated.exit_code, 0) << rated.err;
  CommandResult twice = loom("coord-a", {"feedback", "alice-job-1", "bad"});
  EXPECT_NE(twice.exit_code, 0);
  EXPECT_THAT(twice.err, HasSubstr("already rated"));
  EXPECT_TRUE(WaitFor(
      [&] {
        CommandResult r = loom("coord-a", {"affinities", "--json"});
        json a = json::parse(r.out, nullptr, false);
        if (a.is_discarded()) return false;
        for (const auto& row : a.value("affinities", json::array())) {
          if (row.value("model", "") == "llama-3.1-8b" && row.value("good", 0.0) >= 1) return true;
        }
        return false;
      },
      absl::Seconds(20)))
      << "A learns from the verdict B recorded";
  ExpectBooksVerify();
}

TEST_F(ScaleTest, ACoordinatorKilledUnderLoadLosesNothingDoublesNothingAndItsHoldsExpire) {
  // Short request timeout and margin: an orphaned reservation expires ~1.5 s after it was made.
  const std::vector<std::string> flags = {"--request_timeout_ms=1000", "--reservation_margin_ms=500"};
  StartCoordinator("coord-a", "127.0.0.1:0", flags);
  StartCoordinator("coord-b", "127.0.0.1:0", flags);
  StartWorker("dev-a", "coord-a");
  StartWorker("dev-b", "coord-b");
  const std::string key = NewKey("bob", "50");
  ASSERT_TRUE(WaitFor([&] { return HasDevice("coord-a", key, "dev-a"); }, absl::Seconds(20)));
  ASSERT_TRUE(WaitFor([&] { return HasDevice("coord-b", key, "dev-b"); }, absl::Seconds(20)));
  const std::string a = daemons_["coord-a"].address, b = daemons_["coord-b"].address;

  std::atomic<bool> stop{false};
  std::atomic<int> ok_a{0}, ok_b{0}, failed{0};
  std::mutex mu;
  std::vector<std::string> served;  // request ids answered OK
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 100 && !stop; ++i) {
        const bool to_a = (t + i) % 2 == 0;
        CommandResult r = RunCommand("loom", {"--plaintext", "--coordinator=" + (to_a ? a : b),
                                              "--api_key=" + key, "--timeout_ms=5000", "ask",
                                              "--json", "--model=llama-3.1-8b", "What is a loom?"});
        if (r.exit_code != 0) {
          ++failed;
          continue;
        }
        ++(to_a ? ok_a : ok_b);
        json j = json::parse(r.out, nullptr, false);
        if (!j.is_discarded()) {
          std::lock_guard<std::mutex> lock(mu);
          served.push_back(j.value("requestId", ""));
        }
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return ok_a >= 5 && ok_b >= 5; }, absl::Seconds(60)));
  daemons_["coord-a"].process->Signal(SIGKILL);
  daemons_["coord-a"].process->Wait(absl::Seconds(10));
  const int b_before = ok_b;
  ASSERT_TRUE(WaitFor([&] { return ok_b >= b_before + 8; }, absl::Seconds(60)))
      << "the other coordinator keeps serving";
  stop = true;
  for (auto& c : clients) c.join();

  // Every answered request was settled exactly once; whatever A had in flight either settled
  // or charged nothing, and its holds expire by themselves.
  for (const std::string& id : served) {
    CommandResult records = Ledger({"records", "--request=" + id, "--format=json"});
    ASSERT_EQ(records.exit_code, 0) << records.err;
    EXPECT_EQ(json::parse(records.out).size(), 1u) << id;
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        auto [balance, available] = Balance("client:bob");
        return balance == available;
      },
      absl::Seconds(20)))
      << "a killed coordinator's reservations expire";
  const int64_t spent = 50'000'000 - Balance("client:bob").first;
  int64_t earned = 0;
  for (const char* p : {"provider:prov-dev-a", "provider:prov-dev-b"}) earned += Balance(p).first;
  EXPECT_EQ(spent, earned) << "what the client paid, the providers earned (no fee)";
  ExpectBooksVerify();
}

// kill -9 of either coordinator at random points (three times, the victim and the moment drawn
// from a seed the test prints; LOOM_TEST_SEED replays one), each restarted on its ports, while
// four clients send requests with their own ids to both. Afterwards: every answered request is
// charged exactly once; an unanswered one is charged at most once, and sending it again with
// its id returns the answer it was charged for (a reply lost with its coordinator, replayed)
// or runs it now (charged nothing before) -- so every charge is for an answer the client gets.
TEST_F(ScaleTest, KillingEitherCoordinatorAtRandomPointsChargesOnlyForAnswersAndOnlyOnce) {
  const std::vector<std::string> flags = {"--request_timeout_ms=1000", "--reservation_margin_ms=500"};
  StartCoordinator("coord-a", "127.0.0.1:0", flags);
  StartCoordinator("coord-b", "127.0.0.1:0", flags);
  StartWorker("dev-a", "coord-a,coord-b");
  StartWorker("dev-b", "coord-a,coord-b");
  const std::string key = NewKey("carol", "100");
  for (const char* c : {"coord-a", "coord-b"}) {
    for (const char* d : {"dev-a", "dev-b"}) {
      ASSERT_TRUE(WaitFor([&] { return HasDevice(c, key, d); }, absl::Seconds(20))) << c << " " << d;
    }
  }
  uint64_t seed = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  if (const char* env = std::getenv("LOOM_TEST_SEED")) {
    ASSERT_TRUE(absl::SimpleAtoi(env, &seed));
  }
  std::cout << "LOOM_TEST_SEED=" << seed << "\n";
  SCOPED_TRACE(absl::StrCat("LOOM_TEST_SEED=", seed));
  std::mt19937_64 rng(seed);
  const std::string names[2] = {"coord-a", "coord-b"};
  const std::string grpc[2] = {daemons_[names[0]].address, daemons_[names[1]].address};
  const std::string http[2] = {daemons_[names[0]].http, daemons_[names[1]].http};
  const std::string prompt = "What is a loom?";

  std::atomic<bool> stop{false};
  std::atomic<int> answered_now{0};
  std::mutex mu;
  std::map<std::string, std::string> answered;  // request id -> answer
  std::vector<std::string> unanswered;
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 400 && !stop; ++i) {
        const std::string id = absl::StrCat("carol-", t, "-", i);
        Http r = ChatAt(http[(t + i) % 2], key, prompt, id, id);
        json j = json::parse(r.body, nullptr, false);
        std::lock_guard<std::mutex> lock(mu);
        if (r.status == 200 && !j.is_discarded()) {
          answered[id] = j["choices"][0]["message"]["content"].get<std::string>();
          ++answered_now;
        } else {
          unanswered.push_back(id);
        }
      }
    });
  }
  for (int round = 0; round < 3; ++round) {
    const int victim = static_cast<int>(rng() % 2);
    const int after = answered_now + 1 + static_cast<int>(rng() % 8);
    ASSERT_TRUE(WaitFor([&] { return answered_now >= after; }, absl::Seconds(60)))
        << "round " << round << ": the mesh stopped answering";
    daemons_[names[victim]].process->Signal(SIGKILL);
    daemons_[names[victim]].process->Wait(absl::Seconds(10));
    std::vector<std::string> again = flags;
    again.push_back("--http_listen=" + http[victim]);
    StartCoordinator(names[victim], grpc[victim], again);
    ASSERT_EQ(daemons_[names[victim]].http, http[victim]);
    for (const char* d : {"dev-a", "dev-b"}) {
      ASSERT_TRUE(WaitFor([&] { return HasDevice(names[victim], key, d); }, absl::Seconds(20)))
          << names[victim] << " lost " << d << " after its restart";
    }
  }
  const int before_stop = answered_now;
  ASSERT_TRUE(WaitFor([&] { return answered_now >= before_stop + 4; }, absl::Seconds(60)));
  stop = true;
  for (auto& c : clients) c.join();

  // The killed runs' holds expire by themselves.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto [balance, available] = Balance("client:carol");
        return balance == available;
      },
      absl::Seconds(20)));
  // What the ledger charged, by request id (the ledger scopes a client's ids to its account).
  auto charged = [&] {
    std::map<std::string, int> out;
    const std::string rows = pg_.Sql(
        "loom", "SELECT reference FROM transactions WHERE kind = 'settle' AND reference LIKE "
                "'%carol-%'");
    for (absl::string_view line : absl::StrSplit(rows, '\n', absl::SkipWhitespace())) {
      const size_t at = line.find("carol-");
      if (at != absl::string_view::npos) ++out[std::string(line.substr(at))];
    }
    return out;
  };
  std::map<std::string, int> before = charged();
  for (const auto& [id, answer] : answered) EXPECT_EQ(before[id], 1) << id << " answered";
  int replayed = 0, ran_now = 0;
  for (const std::string& id : unanswered) {
    const int times = before.count(id) ? before[id] : 0;
    EXPECT_LE(times, 1) << id;
    Http again = ChatAt(http[0], key, prompt, id, id);
    ASSERT_EQ(again.status, 200) << id << ": " << again.body;
    if (times == 1) {
      EXPECT_THAT(again.headers, HasSubstr("idempotent-replayed: true")) << id;
      ++replayed;
    } else {
      EXPECT_THAT(again.headers, ::testing::Not(HasSubstr("idempotent-replayed"))) << id;
      ++ran_now;
    }
  }
  std::map<std::string, int> after = charged();
  EXPECT_EQ(after.size(), answered.size() + unanswered.size()) << "each request charged once";
  for (const auto& [id, times] : after) EXPECT_EQ(times, 1) << id;
  std::cout << "answered " << answered.size() << ", unanswered " << unanswered.size() << " ("
            << replayed << " replayed a charged answer, " << ran_now << " ran on resending)\n";

  const int64_t spent = 100'000'000 - Balance("client:carol").first;
  int64_t earned = 0;
  for (const char* p : {"provider:prov-dev-a", "provider:prov-dev-b"}) earned += Balance(p).first;
  EXPECT_GT(spent, 0);
  EXPECT_EQ(spent, earned) << "what the client paid, the providers earned (no fee)";
  ExpectBooksVerify();
}

// deploy/mesh/haproxy.cfg itself -- its addresses rewritten to this test's loopback ports and
// its check interval shortened, nothing else -- in front of two coordinators: HTTP and gRPC
// clients reach both through it, and when one is killed the balancer sends its clients to the
// other without an error reaching them.
TEST_F(ScaleTest, TheDeployedHaproxyConfigSpreadsClientsAndRoutesAroundAKilledCoordinator) {
  ASSERT_EQ(access("/usr/sbin/haproxy", X_OK), 0) << "haproxy is not installed: run deploy/setup.sh";
  StartCoordinator("coord-a");
  StartCoordinator("coord-b");
  StartWorker("dev-a", "coord-a,coord-b");
  const std::string key = NewKey("erin", "20");
  for (const char* c : {"coord-a", "coord-b"}) {
    ASSERT_TRUE(WaitFor([&] { return HasDevice(c, key, "dev-a"); }, absl::Seconds(20))) << c;
  }
  std::string config = ReadFile(std::string(LOOM_SOURCE_DIR) + "/deploy/mesh/haproxy.cfg");
  ASSERT_FALSE(config.empty());
  const int grpc_port = FreePort(), http_port = FreePort();
  ASSERT_TRUE(grpc_port > 0 && http_port > 0);
  auto port_of = [](const std::string& address) { return address.substr(address.rfind(':') + 1); };
  const Daemon& a = daemons_["coord-a"];
  const Daemon& b = daemons_["coord-b"];
  // Each must match: a config that changes shape makes this test say so.
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"bind :7070", absl::StrCat("bind 127.0.0.1:", grpc_port)},
           {"bind :8080", absl::StrCat("bind 127.0.0.1:", http_port)},
           {"10.0.0.11:7070 check port 8080", a.address + " check port " + port_of(a.http)},
           {"10.0.0.12:7070 check port 8080", b.address + " check port " + port_of(b.http)},
           {"10.0.0.11:8080", a.http},
           {"10.0.0.12:8080", b.http},
           {"inter 2s", "inter 100ms"}}) {
    ASSERT_TRUE(absl::StrContains(config, from)) << "haproxy.cfg no longer has '" << from << "'";
    config = absl::StrReplaceAll(config, {{from, to}});
  }
  const std::string path = dir_ + "/haproxy.cfg";
  std::ofstream(path) << config;
  CommandResult checked = RunCommand("/usr/sbin/haproxy", {"-c", "-f", path});
  ASSERT_EQ(checked.exit_code, 0) << checked.out << checked.err;
  auto haproxy = Spawn("/usr/sbin/haproxy", {"-db", "-f", path}, dir_ + "/haproxy.log");
  ASSERT_NE(haproxy, nullptr);
  const std::string http = absl::StrCat("127.0.0.1:", http_port);
  const std::string grpc = absl::StrCat("127.0.0.1:", grpc_port);
  ASSERT_TRUE(WaitFor(
      [&] {
        if (haproxy->Wait(absl::ZeroDuration()) != -1) return true;  // it exited: say so below
        CommandResult r = RunCommand("/usr/bin/curl", {"-s", "-o", "/dev/null", "-w", "%{http_code}",
                                                       "http://" + http + "/healthz"});
        return r.out == "200";
      },
      absl::Seconds(20)))
      << haproxy->Log();
  ASSERT_TRUE(haproxy->running()) << "haproxy exited:\n" << haproxy->Log();

  for (int i = 0; i < 8; ++i) {
    const std::string id = absl::StrCat("erin-", i);
    Http r = ChatAt(http, key, "What is a loom?", id, id);
    ASSERT_EQ(r.status, 200) << r.body << haproxy->Log();
  }
  // Both coordinators settled some of them (each writes to chains of its own).
  const std::string holders = pg_.Sql(
      "loom", "SELECT DISTINCT split_part(chain, '/', 1) FROM transactions WHERE kind = 'settle' "
              "ORDER BY 1");
  EXPECT_EQ(holders, "coord-a\ncoord-b\n") << "leastconn spreads new connections";
  auto ask = [&] {
    return RunCommand("loom", {"--plaintext", "--coordinator=" + grpc, "--api_key=" + key,
                               "--timeout_ms=10000", "ask", "--model=llama-3.1-8b", "Hello?"});
  };
  CommandResult asked = ask();
  EXPECT_EQ(asked.exit_code, 0) << asked.err;

  daemons_["coord-a"].process->Signal(SIGKILL);
  daemons_["coord-a"].process->Wait(absl::Seconds(10));
  for (int i = 0; i < 8; ++i) {  // before and after the balancer's checks notice
    const std::string id = absl::StrCat("erin-after-", i);
    Http r = ChatAt(http, key, "What is a loom?", id, id);
    EXPECT_EQ(r.status, 200) << id << ": " << r.body;
  }
  asked = ask();
  EXPECT_EQ(asked.exit_code, 0) << asked.err;
  if (HasFailure()) std::cerr << "--- haproxy log ---\n" << haproxy->Log();
  ExpectBooksVerify();
}

// The database stops under a running mesh and comes back: requests made meanwhile fail as
// unavailable (503, naming the ledger) and charge nothing; the next ones after it is back are
// served by the same coordinator processes, and the books verify.
TEST_F(ScaleTest, APostgresqlRestartCostsOnlyTheRequestsMadeWhileItIsDown) {
  StartCoordinator("coord-a");
  StartWorker("dev-a", "coord-a");
  const std::string key = NewKey("dave", "10");
  ASSERT_TRUE(WaitFor([&] { return HasDevice("coord-a", key, "dev-a"); }, absl::Seconds(20)));
  ASSERT_EQ(Chat("coord-a", key, "What is a loom?").status, 200);
  const int64_t after_first = Balance("client:dave").first;

  ASSERT_TRUE(pg_.Halt()) << pg_.error();
  Http down = Chat("coord-a", key, "What is a shuttle?", "dave-down");
  EXPECT_EQ(down.status, 503) << down.body;
  EXPECT_THAT(down.body, HasSubstr("PostgreSQL")) << down.body;
  ASSERT_TRUE(pg_.Resume()) << pg_.error();

  for (int i = 0; i < 3; ++i) {  // the coordinator's pooled connections come back one by one
    Http up = Chat("coord-a", key, "What is a heddle?", absl::StrCat("dave-up-", i));
    EXPECT_EQ(up.status, 200) << up.body;
  }
  // The request made while the database was down was never charged: sent again, it runs.
  Http again = Chat("coord-a", key, "What is a shuttle?", "dave-down");
  EXPECT_EQ(again.status, 200) << again.body;
  EXPECT_THAT(again.headers, ::testing::Not(HasSubstr("idempotent-replayed")));
  EXPECT_LT(Balance("client:dave").first, after_first);
  ExpectBooksVerify();
}

// 64 requests at once from one client funded for a handful, spread over two coordinators
// and three workers on one PostgreSQL ledger: never overdrawn, each answered request charged
// once, no refused one charged.
TEST_F(ScaleTest, SixtyFourConcurrentRequestsFromAnUnderfundedClientNeverOverdrawIt) {
  StartCoordinator("coord-a", "127.0.0.1:0", {"--request_threads=64", "--max_requests_per_client=0"});
  StartCoordinator("coord-b", "127.0.0.1:0", {"--request_threads=64", "--max_requests_per_client=0"});
  StartWorker("dev-1", "coord-a,coord-b", {"--max_concurrency=64"});
  StartWorker("dev-2", "coord-a,coord-b", {"--max_concurrency=64"});
  StartWorker("dev-3", "coord-a,coord-b", {"--max_concurrency=64"});
  const std::string key = NewKey("erin", "0.002");  // 2,000 micro-credits
  for (const char* c : {"coord-a", "coord-b"}) {
    for (const char* d : {"dev-1", "dev-2", "dev-3"}) {
      ASSERT_TRUE(WaitFor([&] { return HasDevice(c, key, d); }, absl::Seconds(20))) << c << " " << d;
    }
  }
  std::atomic<int> answered{0}, refused{0};
  std::mutex mu;
  std::vector<std::string> ids;
  std::vector<std::thread> clients;
  for (int i = 0; i < 64; ++i) {
    clients.emplace_back([&, i] {
      const std::string address = daemons_[i % 2 ? "coord-b" : "coord-a"].address;
      CommandResult r = RunCommand("loom", {"--plaintext", "--coordinator=" + address,
                                            "--api_key=" + key, "--timeout_ms=30000", "ask",
                                            "--json", "--max_tokens=16", "--model=llama-3.1-8b",
                                            "Name a colour."});
      if (r.exit_code == 0) {
        ++answered;
        std::lock_guard<std::mutex> lock(mu);
        ids.push_back(json::parse(r.out).value("requestId", ""));
      } else {
        ++refused;
        EXPECT_THAT(r.err, HasSubstr("insufficient credits")) << r.err;
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_GT(answered, 0);
  EXPECT_GT(refused, 0) << "funded for far fewer than 64";
  const auto [balance, available] = Balance("client:erin");
  EXPECT_GE(balance, 0) << "never overdrawn";
  EXPECT_EQ(balance, available) << "no hold left";
  int64_t charged = 0;
  for (const std::string& id : ids) {
    CommandResult records = Ledger({"records", "--request=" + id, "--format=json"});
    ASSERT_EQ(records.exit_code, 0) << records.err;
    json r = json::parse(records.out);
    ASSERT_EQ(r.size(), 1u) << id << " charged once";
    int64_t credits = 0;  // proto3 JSON: int64 as a string
    EXPECT_TRUE(absl::SimpleAtoi(r[0].value("creditsMicro", "0"), &credits)) << r.dump();
    charged += credits;
  }
  EXPECT_EQ(2'000 - balance, charged) << "only answered requests were charged";
  ExpectBooksVerify();
}

// A ledger outgrows its machine: a coordinator on SQLite serves a client, stops; loom-ledger
// migrate copies the books into PostgreSQL and verifies them; a coordinator on PostgreSQL then
// knows the client's key, replays the request id it served, and the books still verify.
TEST_F(ScaleTest, AnSqliteLedgerMigratesToPostgresqlAndServingGoesOnFromIt) {
  const std::string sqlite = "sqlite:" + dir_ + "/old.db";
  const std::string target = ledger_;
  ledger_ = sqlite;
  const std::string key = NewKey("dora", "10");
  StartCoordinator("coord-old");
  StartWorker("dev-old", "coord-old");
  ASSERT_TRUE(WaitFor([&] { return HasDevice("coord-old", key, "dev-old"); }, absl::Seconds(20)));
  Http first = Chat("coord-old", key, "What is the capital of Peru?", "dora-1");
  ASSERT_EQ(first.status, 200) << first.body;
  daemons_.erase("dev-old");
  daemons_.erase("coord-old");  // stopped (SIGTERM), its ledger closed

  CommandResult migrate = RunCommand("loom-ledger", {"migrate", "--from=" + sqlite, "--to=" + target});
  ASSERT_EQ(migrate.exit_code, 0) << migrate.err << migrate.out;
  EXPECT_THAT(migrate.out, HasSubstr("the copy verifies and every balance is equal"));
  // Into a ledger that is not empty: refused, nothing written.
  CommandResult again = RunCommand("loom-ledger", {"migrate", "--from=" + sqlite, "--to=" + target});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_THAT(again.err, HasSubstr("empty"));

  ledger_ = target;
  const auto [balance, available] = Balance("client:dora");
  EXPECT_EQ(balance, 10'000'000 - json::parse(first.body)["loom"]["cost_micro"].get<int64_t>());
  StartCoordinator("coord-new");
  StartWorker("dev-new", "coord-new");
  ASSERT_TRUE(WaitFor([&] { return HasDevice("coord-new", key, "dev-new"); }, absl::Seconds(20)))
      << "the key was migrated";
  Http replay = Chat("coord-new", key, "What is the capital of Peru?", "dora-1");
  ASSERT_EQ(replay.status, 200) << replay.body;
  EXPECT_THAT(replay.headers, HasSubstr("idempotent-replayed: true"));
  EXPECT_EQ(json::parse(replay.body)["choices"][0]["message"]["content"],
            json::parse(first.body)["choices"][0]["message"]["content"]);
  Http next = Chat("coord-new", key, "And of Chile?");
  EXPECT_EQ(next.status, 200) << next.body;
  ExpectBooksVerify();
}

// A device registered with both coordinators is seen by each with its whole load (work sent by
// either), keeps serving the survivor when one is killed, and comes back to it on restart.
TEST_F(ScaleTest, AWorkerOfSeveralCoordinatorsReportsItsWholeLoadToEach) {
  StartCoordinator("coord-a");
  StartCoordinator("coord-b");
  const std::string a = daemons_["coord-a"].address;
  // Slow answers (20 tokens/s, 400 tokens): a request stays running while it is looked at.
  StartWorker("dev-shared", "coord-a,coord-b",
              {"--sim_tokens_per_second=20", "--sim_output_tokens=400", "--max_concurrency=4"});
  const std::string key = NewKey("carol", "20");
  ASSERT_TRUE(WaitFor([&] { return !Device("coord-a", key, "dev-shared").is_null(); }, absl::Seconds(20)));
  ASSERT_TRUE(WaitFor([&] { return !Device("coord-b", key, "dev-shared").is_null(); }, absl::Seconds(20)));

  // Work sent through A shows in the load B sees.
  std::thread slow([&] {
    RunCommand("loom", {"--plaintext", "--coordinator=" + a, "--api_key=" + key,
                        "--timeout_ms=30000", "ask", "--json", "Tell me a long story."});
  });
  EXPECT_TRUE(WaitFor(
      [&] {
        json d = Device("coord-b", key, "dev-shared");
        return !d.is_null() && d["load"].value("active", 0) >= 1;
      },
      absl::Seconds(20)))
      << "B sees the request A sent";
  // A goes; B keeps the device and serves through it.
  daemons_["coord-a"].process->Signal(SIGKILL);
  daemons_["coord-a"].process->Wait(absl::Seconds(10));
  slow.join();
  CommandResult r = RunCommand("loom", {"--plaintext", "--coordinator=" + daemons_["coord-b"].address,
                                        "--api_key=" + key, "--timeout_ms=60000", "ask", "--json",
                                        "--max_tokens=8", "What is a loom?"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // A comes back on its port; the worker registers with it again by itself.
  StartCoordinator("coord-a", a);
  EXPECT_TRUE(WaitFor([&] { return !Device("coord-a", key, "dev-shared").is_null(); }, absl::Seconds(20)));
  ExpectBooksVerify();
}

}  // namespace
}  // namespace loom::testing
