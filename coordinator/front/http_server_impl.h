#ifndef LOOM_COORDINATOR_FRONT_HTTP_SERVER_IMPL_H_
#define LOOM_COORDINATOR_FRONT_HTTP_SERVER_IMPL_H_

// Internal to the HTTP server: what http_server.cc (listening, admission, stop) and
// http_session.cc (one connection's reads, handler runs and writes) share. Not for other code.

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "common/thread_cache.h"
#include "coordinator/front/http_server.h"

namespace loom {
namespace http_internal {

namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

struct Route {
  std::string method;
  std::string path;  // without the trailing '*' of a prefix route
  bool prefix = false;
  HttpHandler handler;
  RouteOptions options;
};

// What the server keeps of a connection, to close it on Stop.
class Connection {
 public:
  virtual ~Connection() = default;
  virtual void Begin() = 0;  // on accept: starts reading (after the TLS handshake)
  virtual void Close() = 0;  // from any thread but an I/O thread; returns once closed
};

// A connection for an accepted socket, not yet begun: TLS when `tls` is set.
std::shared_ptr<Connection> MakeSession(HttpServer::Impl* server, tcp::socket socket,
                                        ssl::context* tls, std::string peer);

}  // namespace http_internal

class HttpServer::Impl {
  using Connection = http_internal::Connection;
  using Route = http_internal::Route;
  using tcp = http_internal::tcp;

 public:
  Impl(HttpServerOptions options, ErrorRenderer error, Finisher finish)
      : options_(std::move(options)),
        error_(std::move(error)),
        finish_(std::move(finish)),
        iocs_(MakeContexts(options_.io_threads)),
        acceptor_(http_internal::net::make_strand(*iocs_.front())),
        retry_timer_(acceptor_.get_executor()) {}

  ~Impl() { Stop(); }

  void Handle(std::string method, std::string path, HttpHandler handler, RouteOptions options) {
    Route route;
    route.method = std::move(method);
    route.prefix = !path.empty() && path.back() == '*';
    if (route.prefix) path.pop_back();
    route.path = std::move(path);
    route.handler = std::move(handler);
    route.options = std::move(options);
    routes_.push_back(std::move(route));
  }

  absl::StatusOr<int> Start(const std::string& host, int port);
  void Stop();

  // For connections.
  const HttpServerOptions& options() const { return options_; }
  HttpResponse Error(int status, const std::string& message) const { return error_(status, message); }
  void Finish(const HttpRequest& request, HttpResponse& response) const {
    if (finish_) finish_(request, response);
  }
  // The route for a request; null with *path_known when only the method differs.
  const Route* Find(const std::string& method, const std::string& path, bool* path_known,
                    std::string* suffix) const {
    *path_known = false;
    for (const Route& r : routes_) {
      const bool match = r.prefix ? absl::StartsWith(path, r.path) : path == r.path;
      if (!match) continue;
      *path_known = true;
      if (r.method != method) continue;
      *suffix = r.prefix ? path.substr(r.path.size()) : "";
      return &r;
    }
    return nullptr;
  }
  bool stopping() const {
    absl::MutexLock lock(&mu_);
    return stopping_;
  }
  void RunHandler(std::function<void()> fn) {
    {
      absl::MutexLock lock(&mu_);
      ++handlers_;
    }
    threads_.Run([this, fn = std::move(fn)] {
      fn();
      absl::MutexLock lock(&mu_);
      --handlers_;
    });
  }
  void Forget(Connection* c, const std::string& peer) {
    absl::MutexLock lock(&mu_);
    connections_.erase(c);
    auto it = per_peer_.find(peer);
    if (it != per_peer_.end() && --it->second == 0) per_peer_.erase(it);
  }
  void CountTimeout() {
    absl::MutexLock lock(&mu_);
    ++timed_out_;
  }
  HttpServerStats stats() const {
    absl::MutexLock lock(&mu_);
    return {static_cast<int>(connections_.size()), handlers_, refused_, timed_out_};
  }

 private:
  void Accept();
  void Accepted(tcp::socket socket);
  // Counts a new connection from `peer` unless a limit is reached.
  bool Admit(const std::string& peer);

  const HttpServerOptions options_;
  const ErrorRenderer error_;
  const Finisher finish_;
  std::vector<Route> routes_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::map<Connection*, std::weak_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> per_peer_ ABSL_GUARDED_BY(mu_);
  int handlers_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t timed_out_ ABSL_GUARDED_BY(mu_) = 0;

  // One io_context per I/O thread, each connection on one of them (round robin): a thread
  // runs its own reactor and never wakes another, where one context shared by two threads
  // passed every event through a mutex and a condition variable (a third of the
  // coordinator's futex calls on the keep-alive path).
  using IoContext = http_internal::net::io_context;
  static std::vector<std::unique_ptr<IoContext>> MakeContexts(int n) {
    std::vector<std::unique_ptr<IoContext>> out;
    for (int i = 0; i < std::max(1, n); ++i) out.push_back(std::make_unique<IoContext>(1));
    return out;
  }
  IoContext& NextContext() {
    return *iocs_[next_context_.fetch_add(1, std::memory_order_relaxed) % iocs_.size()];
  }
  // Destroyed before the state above: pending operations hold connections, whose
  // destructors call Forget.
  std::vector<std::unique_ptr<IoContext>> iocs_;
  std::atomic<size_t> next_context_{0};
  std::vector<http_internal::net::executor_work_guard<IoContext::executor_type>> work_;
  std::optional<http_internal::ssl::context> tls_;
  tcp::acceptor acceptor_;
  http_internal::net::steady_timer retry_timer_;
  std::vector<std::thread> io_threads_;
  ThreadCache threads_;  // handler threads; joined first
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_FRONT_HTTP_SERVER_IMPL_H_
