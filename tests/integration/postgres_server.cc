// File: tests/integration/postgres_server.cc
#include "tests/integration/postgres_server.h"

#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "tests/integration/process_harness.h"

namespace loom::testing {

PostgresServer::~PostgresServer() { Stop(); }

bool PostgresServer::RunTool(const std::string& tool, const std::vector<std::string>& args,
                             std::string* out) {
  std::vector<std::string> argv = args;
  std::string binary = Bin(tool);
  if (geteuid() == 0) {
    argv.insert(argv.begin(), {"-u", "postgres", "--", binary});
    binary = "/usr/sbin/runuser";
  }
  CommandResult r = RunCommand(binary, argv, absl::Seconds(60));
  if (out) *out = r.out;
  if (r.exit_code != 0) {
    error_ = absl::StrCat(tool, " failed (exit ", r.exit_code, "): ", r.err, r.out);
    return false;
  }
  return true;
}

bool PostgresServer::Start() {
  CommandResult config = RunCommand("/usr/bin/pg_config", {"--bindir"}, absl::Seconds(10));
  if (config.exit_code != 0) {
    error_ = "pg_config not found: run deploy/setup.sh (it installs postgresql and libpq-dev)";
    return false;
  }
  bindir_ = std::string(absl::StripAsciiWhitespace(config.out));
  if (access(Bin("initdb").c_str(), X_OK) != 0) {
    error_ = absl::StrCat("no initdb in ", bindir_, ": install the postgresql package");
    return false;
  }
  dir_ = MakeTempDir();
  if (dir_.empty()) {
    error_ = "cannot make a temporary directory";
    return false;
  }
  if (geteuid() == 0) {
    const passwd* pw = getpwnam("postgres");
    if (!pw) {
      error_ = "running as root and there is no 'postgres' user to run the server as";
      return false;
    }
    if (chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      error_ = "cannot hand the temporary directory to the postgres user";
      return false;
    }
  }
  if (!RunTool("initdb", {"-D", dir_ + "/data", "-A", "trust", "-U", "loom", "-E", "UTF8",
                          "--no-sync", "--no-instructions"},
               nullptr)) {
    return false;
  }
  for (int attempt = 0; attempt < 3 && !running_; ++attempt) {
    port_ = FreePort();
    running_ = StartOnPort();
  }
  if (!running_) absl::StrAppend(&error_, "\n", ReadFile(dir_ + "/server.log"));
  return running_;
}

bool PostgresServer::StartOnPort() {
  return RunTool("pg_ctl", {"-D", dir_ + "/data", "-l", dir_ + "/server.log", "-w", "-t", "30", "-o",
                            absl::StrCat("-h 127.0.0.1 -p ", port_, " -k ", dir_), "start"},
                 nullptr);
}

bool PostgresServer::Halt() {
  if (!running_) return false;
  running_ = !RunTool("pg_ctl", {"-D", dir_ + "/data", "-m", "fast", "-w", "-t", "30", "stop"},
                      nullptr);
  return !running_;
}

bool PostgresServer::Resume() {
  if (running_ || dir_.empty()) return running_;
  running_ = StartOnPort();
  if (!running_) absl::StrAppend(&error_, "\n", ReadFile(dir_ + "/server.log"));
  return running_;
}

void PostgresServer::Stop() {
  if (running_) {
    RunTool("pg_ctl", {"-D", dir_ + "/data", "-m", "fast", "-w", "-t", "30", "stop"}, nullptr);
    running_ = false;
  }
  if (!dir_.empty()) {
    RunCommand("/bin/rm", {"-rf", dir_}, absl::Seconds(30));
    dir_.clear();
  }
}

std::string PostgresServer::ConnInfo(const std::string& database) const {
  return absl::StrCat("host=127.0.0.1 port=", port_, " user=loom dbname=", database,
                      " connect_timeout=10");
}

std::string PostgresServer::Sql(const std::string& database, const std::string& sql) {
  CommandResult r = RunCommand(Bin("psql"), {"-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d",
                                             ConnInfo(database), "-c", sql},
                               absl::Seconds(60));
  if (r.exit_code != 0) {
    error_ = absl::StrCat("psql failed: ", r.err);
    return "";
  }
  return r.out.empty() ? " " : r.out;
}

std::string PostgresServer::CreateDatabase(const std::string& database) {
  if (Sql("postgres", absl::StrCat("DROP DATABASE IF EXISTS ", database)).empty()) return "";
  if (Sql("postgres", absl::StrCat("CREATE DATABASE ", database)).empty()) return "";
  return ConnInfo(database);
}

}  // namespace loom::testing
