#include "tests/integration/process_harness.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace loom::testing {

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Duration pause = absl::Milliseconds(5);
  while (true) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(std::min(pause, deadline - absl::Now()));
    pause = std::min(pause * 2, absl::Milliseconds(100));
  }
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string MakeTempDir() {
  const char* base = getenv("TMPDIR");
  std::string pattern = absl::StrCat(base && *base ? base : "/tmp", "/loom-test-XXXXXX");
  char* made = mkdtemp(pattern.data());
  return made ? std::string(made) : std::string();
}

namespace {

pid_t SpawnRaw(const std::string& binary, const std::vector<std::string>& args,
               const std::string& out_path, const std::string& err_path,
               const SpawnOptions& options = {}) {
  const std::string path = binary[0] == '/' ? binary : absl::StrCat(LOOM_BIN_DIR, "/", binary);
  std::vector<std::string> argv_storage = {path};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int err = err_path == out_path ? out : open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int null = open("/dev/null", O_RDONLY);
    dup2(null, 0);
    dup2(out, 1);
    dup2(err, 2);
    // Children must not inherit the test's blocked signals, nor signals ignored by whatever
    // started the test (a shell's background job ignores SIGINT and SIGQUIT): a test that
    // interrupts a child must be able to.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGINT, SIGQUIT, SIGTERM, SIGHUP}) signal(sig, SIG_DFL);
    if (options.die_with_parent) prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (options.cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(options.cpu, &set);
      sched_setaffinity(0, sizeof(set), &set);
    }
    execv(path.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

}  // namespace

std::unique_ptr<Process> Spawn(const std::string& binary, const std::vector<std::string>& args,
                               const std::string& log_path, const SpawnOptions& options) {
  pid_t pid = SpawnRaw(binary, args, log_path, log_path, options);
  if (pid < 0) return nullptr;
  return std::make_unique<Process>(pid, binary, log_path);
}

Process::~Process() {
  if (reaped_) return;
  Signal(SIGTERM);
  if (Wait(absl::Seconds(10)) == -1) {
    Signal(SIGKILL);
    Wait(absl::Seconds(10));
  }
}

std::string Process::Log() const { return ReadFile(log_); }

void Process::Signal(int sig) {
  if (!reaped_) kill(pid_, sig);
}

int Process::Wait(absl::Duration timeout) {
  if (reaped_) return status_;
  bool done = WaitFor(
      [&] {
        int status = 0;
        pid_t r = waitpid(pid_, &status, WNOHANG);
        if (r == pid_) {
          reaped_ = true;
          status_ = status;
        }
        return reaped_;
      },
      timeout);
  return done ? status_ : -1;
}

CommandResult RunCommand(const std::string& binary, const std::vector<std::string>& args,
                  absl::Duration timeout) {
  const std::string dir = MakeTempDir();
  const std::string out = dir + "/out", err = dir + "/err";
  pid_t pid = SpawnRaw(binary, args, out, err);
  Process process(pid, binary, err);
  CommandResult result;
  int status = process.Wait(timeout);
  if (status == -1) {
    process.Signal(SIGKILL);
    process.Wait(absl::Seconds(10));
  } else if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  }
  result.out = ReadFile(out);
  result.err = ReadFile(err);
  unlink(out.c_str());
  unlink(err.c_str());
  rmdir(dir.c_str());
  return result;
}

Daemon StartDaemon(const std::string& binary, const std::string& dir, const std::string& name,
                   std::vector<std::string> args, std::string* error,
                   const SpawnOptions& options) {
  Daemon d;
  d.ready_file = absl::StrCat(dir, "/", name, ".ready.json");
  unlink(d.ready_file.c_str());
  args.push_back(absl::StrCat("--ready_file=", d.ready_file));
  d.process = Spawn(binary, args, absl::StrCat(dir, "/", name, ".log"), options);
  Process* p = d.process.get();
  bool ready = WaitFor(
      [&] {
        if (p->Wait(absl::ZeroDuration()) != -1) return true;  // exited: stop waiting
        return access(d.ready_file.c_str(), R_OK) == 0;
      },
      absl::Seconds(30));
  if (!ready || !p->running()) {
    *error = absl::StrCat(name, " did not become ready; log:\n", p->Log());
    d.process.reset();
    return d;
  }
  auto json = nlohmann::json::parse(ReadFile(d.ready_file), nullptr, false);
  const char* key = json.contains("grpc") ? "grpc" : "base_url";
  if (json.is_discarded() || !json.contains(key)) {
    *error = absl::StrCat(name, ": unreadable ready file ", d.ready_file);
    d.process.reset();
    return d;
  }
  d.address = json[key].get<std::string>();
  if (json.contains("http") && json["http"].is_string()) d.http = json["http"].get<std::string>();
  return d;
}

int64_t JsonInt64(const nlohmann::json& object, const std::string& key, int64_t missing) {
  if (!object.is_object() || !object.contains(key)) return missing;
  const nlohmann::json& v = object[key];
  if (v.is_number_integer()) return v.get<int64_t>();
  int64_t parsed = 0;
  if (v.is_string() && absl::SimpleAtoi(v.get<std::string>(), &parsed)) return parsed;
  return missing;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

}  // namespace loom::testing
