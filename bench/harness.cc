// File: bench/harness.cc
#include "bench/harness.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"

namespace loom::bench {

void Line(Results* r, const std::string& text) {
  r->lines.push_back(text);
  if (!r->quiet) std::cout << text << std::endl;
}

std::string Verdict(bool met) { return met ? "met" : "MISSED"; }

void Die(const std::string& message) {
  std::cerr << "loom_bench: " << message << "\n";
  std::exit(1);
}

void PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof(set), &set);
}

double Us(SteadyClock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

std::chrono::system_clock::time_point In(int seconds) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

double CpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; fields >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) {
      stime = std::stol(field);
      break;
    }
  }
  return static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
}

long RssKb(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

Percentiles Of(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)]};
}

std::vector<double> Sequential(int n, const std::function<void()>& call) {
  for (int i = 0; i < n / 4; ++i) call();
  std::vector<double> us;
  us.reserve(n);
  for (int i = 0; i < n; ++i) {
    const auto start = SteadyClock::now();
    call();
    us.push_back(Us(SteadyClock::now() - start));
  }
  return us;
}

double Saturation(int inflight, double seconds, const std::function<void()>& call) {
  std::atomic<bool> stop{false};
  std::atomic<long> done{0};
  std::vector<std::thread> threads;
  const auto start = SteadyClock::now();
  for (int t = 0; t < inflight; ++t) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        call();
        ++done;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  return done.load() / std::chrono::duration<double>(SteadyClock::now() - start).count();
}

Saturated SaturationWithCpu(int inflight, double seconds, const std::function<void()>& call,
                            const std::vector<pid_t>& pids) {
  std::vector<double> before;
  for (pid_t pid : pids) before.push_back(CpuSeconds(pid));
  const auto start = SteadyClock::now();
  Saturated out;
  out.rps = Saturation(inflight, seconds, call);
  const double calls = out.rps * std::chrono::duration<double>(SteadyClock::now() - start).count();
  for (size_t i = 0; i < pids.size(); ++i) {
    out.cpu_us.push_back(1e6 * (CpuSeconds(pids[i]) - before[i]) / calls);
  }
  return out;
}

v1::ChatMessage User(const std::string& text) {
  v1::ChatMessage m;
  m.set_role("user");
  m.set_content(text);
  return m;
}

}  // namespace loom::bench
