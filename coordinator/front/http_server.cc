#include "coordinator/front/http_server.h"

#include <chrono>
#include <map>
#include <thread>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <spdlog/spdlog.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/front/http_server_impl.h"

namespace loom {

namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

namespace {
bool SameName(const std::string& a, std::string_view b) {
  return absl::EqualsIgnoreCase(a, absl::string_view(b.data(), b.size()));
}
}  // namespace

std::string HttpRequest::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (SameName(key, name)) return value;
  }
  return "";
}

bool HttpRequest::HasHeader(std::string_view name) const {
  for (const auto& header : headers) {
    if (SameName(header.first, name)) return true;
  }
  return false;
}

void HttpResponse::SetHeader(std::string name, std::string value) {
  for (auto& header : headers) {
    if (SameName(header.first, name)) {
      header.second = std::move(value);
      return;
    }
  }
  headers.emplace_back(std::move(name), std::move(value));
}

bool HttpResponse::HasHeader(std::string_view name) const {
  for (const auto& header : headers) {
    if (SameName(header.first, name)) return true;
  }
  return false;
}


absl::StatusOr<int> HttpServer::Impl::Start(const std::string& host, int port) {
  if (!options_.tls_cert.empty() || !options_.tls_key.empty()) {
    try {
      tls_.emplace(ssl::context::tls_server);
      tls_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                        ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                        ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
      tls_->use_certificate_chain_file(options_.tls_cert);
      tls_->use_private_key_file(options_.tls_key, ssl::context::pem);
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat("HTTPS: cannot load ", options_.tls_cert,
                                                     " / ", options_.tls_key, ": ", e.what()));
    }
  }
  boost::system::error_code ec;
  tcp::resolver resolver(*iocs_.front());
  auto endpoints = resolver.resolve(host, std::to_string(port), tcp::resolver::passive, ec);
  if (ec || endpoints.empty()) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", host, ": ", ec.message()));
  }
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", host, ":", port, ": ",
                                               ec.message()));
  }
  const int bound = acceptor_.local_endpoint().port();
  {
    absl::MutexLock lock(&mu_);
    started_ = true;
  }
  for (auto& ioc : iocs_) work_.emplace_back(ioc->get_executor());
  net::dispatch(acceptor_.get_executor(), [this] { Accept(); });
  for (auto& ioc : iocs_) io_threads_.emplace_back([ctx = ioc.get()] { ctx->run(); });
  return bound;
}

void HttpServer::Impl::Accept() {
  acceptor_.async_accept(net::make_strand(NextContext()), [this](boost::system::error_code ec, tcp::socket socket) {
    if (!acceptor_.is_open() || ec == net::error::operation_aborted) return;
    if (ec) {
      // Out of descriptors (EMFILE) and the like: try again shortly instead of spinning.
      spdlog::warn("HTTP accept failed: {}", ec.message());
      retry_timer_.expires_after(std::chrono::milliseconds(50));
      retry_timer_.async_wait([this](boost::system::error_code e) {
        if (!e && acceptor_.is_open()) Accept();
      });
      return;
    }
    Accepted(std::move(socket));
    Accept();
  });
}

bool HttpServer::Impl::Admit(const std::string& peer) {
  absl::MutexLock lock(&mu_);
  const int per_peer = options_.max_connections_per_peer;
  if (stopping_ || static_cast<int>(connections_.size()) >= options_.max_connections ||
      (per_peer > 0 && per_peer_[peer] >= per_peer)) {
    if (per_peer_[peer] == 0) per_peer_.erase(peer);
    ++refused_;
    return false;
  }
  ++per_peer_[peer];
  return true;
}

void HttpServer::Impl::Accepted(tcp::socket socket) {
  boost::system::error_code ec;
  const tcp::endpoint remote = socket.remote_endpoint(ec);
  if (ec) return;  // already gone
  const std::string peer = remote.address().to_string();
  // Every request after the first on a keep-alive connection would otherwise wait ~40 ms for
  // the client's delayed ACK (Nagle).
  socket.set_option(tcp::no_delay(true), ec);
  if (!Admit(peer)) {
    socket.close(ec);
    return;
  }
  std::shared_ptr<Connection> session = http_internal::MakeSession(
      this, std::move(socket), tls_ ? &*tls_ : nullptr, peer);
  {
    absl::MutexLock lock(&mu_);
    connections_[session.get()] = session;
  }
  session->Begin();
}

void HttpServer::Impl::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (!started_ || stopping_) return;
    stopping_ = true;
  }
  net::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    retry_timer_.cancel();
  });
  // Requests running now may finish (their connections then close), for a while.
  auto idle = +[](int* handlers) { return *handlers == 0; };
  {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(idle, &handlers_), absl::Seconds(5));
  }
  // Then every connection closes; handlers still running see their client gone.
  std::vector<std::shared_ptr<Connection>> open;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [raw, weak] : connections_) {
      if (auto c = weak.lock()) open.push_back(std::move(c));
    }
  }
  for (auto& c : open) c->Close();
  open.clear();
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(idle, &handlers_));
  }
  work_.clear();
  for (auto& ioc : iocs_) ioc->stop();
  for (auto& t : io_threads_) t.join();
  io_threads_.clear();
}

HttpServer::HttpServer(HttpServerOptions options, ErrorRenderer error, Finisher finish)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(error), std::move(finish))) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Handle(std::string method, std::string path, HttpHandler handler,
                        RouteOptions options) {
  impl_->Handle(std::move(method), std::move(path), std::move(handler), std::move(options));
}

absl::StatusOr<int> HttpServer::Start(const std::string& host, int port) {
  return impl_->Start(host, port);
}

void HttpServer::Stop() { impl_->Stop(); }

HttpServerStats HttpServer::stats() const { return impl_->stats(); }

}  // namespace loom