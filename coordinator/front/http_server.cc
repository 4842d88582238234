#include "coordinator/front/http_server.h"

#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <future>
#include <map>
#include <thread>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <spdlog/spdlog.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/thread_cache.h"

namespace loom {

namespace beast = boost::beast;
namespace http = beast::http;
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

namespace {

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
  virtual void Close() = 0;  // from any thread but an I/O thread; returns once closed
};

constexpr size_t kReadChunk = 8 << 10;
constexpr size_t kMaxDrainBytes = 1 << 20;
constexpr auto kDrainTime = std::chrono::seconds(2);

std::chrono::steady_clock::duration Chrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

}  // namespace

class HttpServer::Impl {
 public:
  Impl(HttpServerOptions options, ErrorRenderer error, Finisher finish)
      : options_(std::move(options)),
        error_(std::move(error)),
        finish_(std::move(finish)),
        acceptor_(net::make_strand(ioc_)),
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

  // Destroyed before the state above: pending operations hold connections, whose
  // destructors call Forget.
  net::io_context ioc_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  std::optional<ssl::context> tls_;
  tcp::acceptor acceptor_;
  net::steady_timer retry_timer_;
  std::vector<std::thread> io_threads_;
  ThreadCache threads_;  // handler threads; joined first
};

namespace {

// One connection: reads requests one after another, runs each one's handler, writes its
// response or stream. Every member is touched only on the connection's strand, except what
// the exchange methods read while a handler runs (request_, gone_, keep_alive_, chunked_),
// which the strand leaves alone until the handler has returned.
template <class Stream>
class Session final : public Connection,
                      public HttpExchange,
                      public std::enable_shared_from_this<Session<Stream>> {
 public:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  Session(HttpServer::Impl* server, Stream stream, std::string peer)
      : server_(server), stream_(std::move(stream)), peer_(std::move(peer)) {}
  ~Session() override { server_->Forget(this, peer_); }

  void Begin() {
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if constexpr (kTls) {
        self->tcp().expires_after(Chrono(self->server_->options().request_read_timeout));
        self->stream_.async_handshake(ssl::stream_base::server,
                                      [self](beast::error_code ec) {
                                        if (ec) return self->CloseNow();
                                        self->WaitForRequest(/*first=*/true);
                                      });
      } else {
        self->WaitForRequest(/*first=*/true);
      }
    });
  }

  void Close() override {
    std::promise<void> closed;
    net::post(stream_.get_executor(), [self = this->shared_from_this(), &closed] {
      self->CloseNow();
      closed.set_value();
    });
    closed.get_future().wait();
  }

  // HttpExchange, on the handler's thread.
  const HttpRequest& request() const override { return request_; }
  Cancellation* client_gone() override { return gone_.get(); }

  bool StartStream(const HttpResponse& given) override {
    HttpResponse head = given;
    server_->Finish(request_, head);
    std::string out = absl::StrCat(
        "HTTP/1.", version_ >= 11 ? "1" : "0", " ", head.status, " ",
        std::string(http::obsolete_reason(http::int_to_status(head.status))), "\r\n");
    absl::StrAppend(&out, "Content-Type: ", head.content_type, "\r\n");
    for (const auto& [name, value] : head.headers) absl::StrAppend(&out, name, ": ", value, "\r\n");
    // HTTP/1.0 has no chunked encoding: the stream ends when the connection closes.
    if (chunked_) absl::StrAppend(&out, "Transfer-Encoding: chunked\r\n");
    if (!keep_alive_ || !chunked_) absl::StrAppend(&out, "Connection: close\r\n");
    absl::StrAppend(&out, "\r\n");
    absl::MutexLock lock(&write_mu_);
    if (stream_started_) return false;
    stream_started_ = true;
    queued_ = std::move(out);  // sent with the first bytes (Write, or the end of the handler)
    return !gone_->IsCancelled();
  }

  bool Write(std::string_view data) override {
    absl::MutexLock lock(&write_mu_);
    if (!stream_started_) return false;
    if (data.empty() && queued_.empty()) return !gone_->IsCancelled();
    std::string out = std::move(queued_);
    queued_.clear();
    AppendChunk(&out, data);
    const bool first = !head_written_;
    head_written_ = true;
    return WriteOnStrand(std::move(out), /*start=*/first);
  }

  bool Queue(std::string_view data) override {
    absl::MutexLock lock(&write_mu_);
    if (!stream_started_) return false;
    AppendChunk(&queued_, data);
    return !gone_->IsCancelled();
  }

 private:
  beast::tcp_stream& tcp() { return beast::get_lowest_layer(stream_); }

  // Waits for the first byte of the next request: a new connection gets the read deadline,
  // a kept-alive one the keep-alive timeout.
  void WaitForRequest(bool first) {
    if (closed_) return;
    if (server_->stopping()) return Shutdown();
    if (buffer_.size() > 0) return ReadHead();  // pipelined
    const HttpServerOptions& o = server_->options();
    tcp().expires_after(Chrono(first ? o.request_read_timeout : o.keep_alive_timeout));
    stream_.async_read_some(buffer_.prepare(kReadChunk),
                            [self = this->shared_from_this()](beast::error_code ec, size_t n) {
                              if (ec) return self->CloseNow();  // idle, closed or broken
                              self->buffer_.commit(n);
                              self->ReadHead();
                            });
  }

  void ReadHead() {
    const HttpServerOptions& o = server_->options();
    request_ = HttpRequest{};
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(o.max_header_bytes));
    parser_->body_limit(o.max_body_bytes);
    // One deadline for the whole head and body, however slowly they drip in.
    read_deadline_ = std::chrono::steady_clock::now() + Chrono(o.request_read_timeout);
    tcp().expires_at(read_deadline_);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = this->shared_from_this()](beast::error_code ec, size_t) {
                              self->OnHead(ec);
                            });
  }

  void OnHead(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    auto& msg = parser_->get();
    FillHead();
    version_ = msg.version();
    chunked_ = version_ >= 11;
    keep_alive_ = msg.keep_alive() &&
                  ++served_ < server_->options().keep_alive_max_requests;
    bool path_known = false;
    route_ = server_->Find(request_.method, request_.path, &path_known, &request_.suffix);
    if (route_ == nullptr) {
      HttpResponse r = path_known ? server_->Error(405, "method not allowed on this endpoint")
                                  : server_->Error(404, "no such endpoint");
      return Refuse(std::move(r));
    }
    if (parser_->content_length() && *parser_->content_length() > server_->options().max_body_bytes) {
      return Refuse(server_->Error(413, "request body too large"));
    }
    if (route_->options.head_filter) {
      if (std::optional<HttpResponse> refused = route_->options.head_filter(request_)) {
        return Refuse(std::move(*refused));
      }
    }
    if (parser_->is_done()) return OnBody({});
    if (absl::EqualsIgnoreCase(std::string(msg[http::field::expect]), "100-continue")) {
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      net::async_write(stream_, net::buffer(kContinue),
                       [self = this->shared_from_this()](beast::error_code ec, size_t) {
                         if (ec) return self->CloseNow();
                         self->tcp().expires_at(self->read_deadline_);
                         self->ReadBody();
                       });
      return;
    }
    ReadBody();
  }

  // The request line and headers parsed so far (all of them once the head is done).
  void FillHead() {
    auto& msg = parser_->get();
    request_.method = std::string(msg.method_string());
    request_.target = std::string(msg.target());
    request_.path = request_.target.substr(0, request_.target.find('?'));
    request_.headers.clear();
    for (const auto& field : msg) {
      request_.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    request_.peer = peer_;
  }

  void ReadBody() {
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
                       self->OnBody(ec);
                     });
  }

  void OnBody(beast::error_code ec) {
    if (ec == http::error::body_limit) return Refuse(server_->Error(413, "request body too large"));
    if (ec) return OnReadError(ec);
    request_.body = std::move(parser_->get().body());
    Dispatch();
  }

  void OnReadError(beast::error_code ec) {
    if (ec == http::error::header_limit) {
      return Refuse(server_->Error(431, "request header fields too large"));
    }
    if (ec == http::error::body_limit) {  // a Content-Length over the limit, seen in the head
      FillHead();  // for the finisher: the refusal is counted under its route
      return Refuse(server_->Error(413, "request body too large"));
    }
    if (ec == beast::error::timeout) {
      server_->CountTimeout();
      return CloseNow();
    }
    if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
        ec.category() != http::make_error_code(http::error::bad_target).category()) {
      return CloseNow();  // the client closed or the connection broke
    }
    Refuse(server_->Error(400, absl::StrCat("malformed HTTP request: ", ec.message())));
  }

  // Answers and closes: the rest of the request is not read.
  void Refuse(HttpResponse response) {
    keep_alive_ = false;
    gone_ = std::make_shared<Cancellation>();
    Send(std::move(response));
  }

  void Dispatch() {
    gone_ = std::make_shared<Cancellation>();
    streaming_ = false;
    if (route_->options.on_io_thread) return Send(CallHandler());
    handler_running_ = true;
    Watch();
    server_->RunHandler([self = this->shared_from_this()] {
      HttpResponse response = self->CallHandler();
      net::post(self->stream_.get_executor(), [self, response = std::move(response)]() mutable {
        self->handler_running_ = false;
        self->StopWatching();
        // The handler is done: what it queued (a head with nothing written after it, or
        // bytes after the last Write) goes out with the end of the stream.
        std::string rest;
        bool streamed = false;
        {
          absl::MutexLock lock(&self->write_mu_);
          streamed = self->stream_started_;
          rest = std::move(self->queued_);
          self->queued_.clear();
          self->stream_started_ = self->head_written_ = false;
        }
        if (!streamed) return self->Send(std::move(response));
        self->streaming_ = true;
        if (self->closed_) return;
        if (self->chunked_) rest += "0\r\n\r\n";
        if (rest.empty()) return self->Shutdown();  // HTTP/1.0: the end is the close
        auto bytes = std::make_shared<std::string>(std::move(rest));
        self->tcp().expires_after(Chrono(self->server_->options().write_timeout));
        net::async_write(self->stream_, net::buffer(*bytes),
                         [self, bytes](beast::error_code ec, size_t) {
                           if (ec) return self->CloseNow();
                           if (!self->chunked_) return self->Shutdown();
                           self->AfterResponse();
                         });
      });
    });
  }

  HttpResponse CallHandler() {
    try {
      return route_->handler(*this);
    } catch (const std::exception& e) {
      spdlog::error("HTTP {} {} failed: {}", request_.method, request_.path, e.what());
    } catch (...) {
      spdlog::error("HTTP {} {} failed", request_.method, request_.path);
    }
    return server_->Error(500, "internal error while handling the request");
  }

  // While a handler runs: a non-consuming wait on the socket. Readable with nothing to read
  // (end of stream) or an error means the client is gone; readable with data is a pipelined
  // request (or, over TLS, a record: an alert is the client closing).
  void Watch() {
    if (closed_ || watching_ || !handler_running_) return;
    watching_ = true;
    tcp().socket().async_wait(
        tcp::socket::wait_read, [self = this->shared_from_this()](beast::error_code ec) {
          self->watching_ = false;
          if (ec == net::error::operation_aborted || !self->handler_running_) return;
          if (ec) return self->gone_->Cancel();
          char first = 0;
          const ssize_t n = ::recv(self->tcp().socket().native_handle(), &first, 1,
                                   MSG_PEEK | MSG_DONTWAIT);
          if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            return self->gone_->Cancel();
          }
          if (n > 0 && kTls && first == 0x15) return self->gone_->Cancel();  // TLS alert
          if (n < 0) self->Watch();  // spurious wake-up
        });
  }

  void StopWatching() {
    if (!watching_) return;
    beast::error_code ignored;
    tcp().socket().cancel(ignored);
  }

  // From a handler's thread: writes `bytes` on the strand and waits for it.
  void AppendChunk(std::string* out, std::string_view data) const {
    if (data.empty()) return;
    if (chunked_) {
      absl::StrAppend(out, absl::Hex(data.size()), "\r\n", absl::string_view(data.data(), data.size()),
                      "\r\n");
    } else {
      out->append(data.data(), data.size());
    }
  }

  bool WriteOnStrand(std::string bytes, bool start) {
    std::promise<bool> written;
    std::future<bool> result = written.get_future();
    net::post(stream_.get_executor(), [self = this->shared_from_this(), &bytes, &written, start] {
      if (self->closed_ || self->streaming_ == start) return written.set_value(false);
      self->streaming_ = true;
      self->tcp().expires_after(Chrono(self->server_->options().write_timeout));
      net::async_write(self->stream_, net::buffer(bytes),
                       [self, &written](beast::error_code ec, size_t) {
                         if (ec) {
                           self->gone_->Cancel();
                           self->CloseNow();
                         }
                         written.set_value(!ec);
                       });
    });
    return result.get();
  }

  void Send(HttpResponse response) {
    if (closed_) return;
    server_->Finish(request_, response);
    auto res = std::make_shared<http::response<http::string_body>>(
        http::int_to_status(response.status), version_);
    res->result(static_cast<unsigned>(response.status));
    for (auto& [name, value] : response.headers) res->set(name, value);
    res->set(http::field::content_type, response.content_type);
    res->body() = std::move(response.body);
    res->keep_alive(keep_alive_);
    res->prepare_payload();
    tcp().expires_after(Chrono(server_->options().write_timeout));
    http::async_write(stream_, *res,
                      [self = this->shared_from_this(), res](beast::error_code ec, size_t) {
                        if (ec) return self->CloseNow();
                        self->AfterResponse();
                      });
  }

  void AfterResponse() {
    if (!keep_alive_ || gone_->IsCancelled()) return Shutdown();
    WaitForRequest(/*first=*/false);
  }

  // A graceful close: TLS says close_notify; plain TCP half-closes and reads what the client
  // still sends for a moment, so that closing with unread bytes (a refused body) does not
  // reset the connection before the client has read the answer.
  void Shutdown() {
    if (closed_) return;
    if constexpr (kTls) {
      tcp().expires_after(kDrainTime);
      stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) {
        self->CloseNow();
      });
    } else {
      beast::error_code ignored;
      tcp().socket().shutdown(tcp::socket::shutdown_send, ignored);
      tcp().expires_after(kDrainTime);
      Drain();
    }
  }

  void Drain() {
    buffer_.clear();
    stream_.async_read_some(buffer_.prepare(kReadChunk),
                            [self = this->shared_from_this()](beast::error_code ec, size_t n) {
                              self->drained_ += n;
                              if (ec || self->drained_ > kMaxDrainBytes) return self->CloseNow();
                              self->Drain();
                            });
  }

  void CloseNow() {
    if (closed_) return;
    closed_ = true;
    if (gone_ && handler_running_) gone_->Cancel();
    beast::error_code ignored;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp().close();
  }

  HttpServer::Impl* const server_;
  Stream stream_;
  const std::string peer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::chrono::steady_clock::time_point read_deadline_;
  const Route* route_ = nullptr;
  HttpRequest request_;
  std::shared_ptr<Cancellation> gone_;
  unsigned version_ = 11;
  bool chunked_ = true;
  bool keep_alive_ = true;
  int served_ = 0;
  bool handler_running_ = false;
  bool watching_ = false;
  bool streaming_ = false;
  // The handler thread's side of a stream (StartStream, Write, Queue).
  absl::Mutex write_mu_;
  bool stream_started_ ABSL_GUARDED_BY(write_mu_) = false;
  bool head_written_ ABSL_GUARDED_BY(write_mu_) = false;
  std::string queued_ ABSL_GUARDED_BY(write_mu_);  // the head and bytes not yet written
  bool closed_ = false;
  size_t drained_ = 0;
};

}  // namespace

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
  beast::error_code ec;
  tcp::resolver resolver(ioc_);
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
  work_.emplace(ioc_.get_executor());
  net::dispatch(acceptor_.get_executor(), [this] { Accept(); });
  for (int i = 0; i < std::max(1, options_.io_threads); ++i) {
    io_threads_.emplace_back([this] { ioc_.run(); });
  }
  return bound;
}

void HttpServer::Impl::Accept() {
  acceptor_.async_accept(net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
    if (!acceptor_.is_open() || ec == net::error::operation_aborted) return;
    if (ec) {
      // Out of descriptors (EMFILE) and the like: try again shortly instead of spinning.
      spdlog::warn("HTTP accept failed: {}", ec.message());
      retry_timer_.expires_after(std::chrono::milliseconds(50));
      retry_timer_.async_wait([this](beast::error_code e) {
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
  beast::error_code ec;
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
  auto remember = [&](auto session) {
    {
      absl::MutexLock lock(&mu_);
      connections_[session.get()] = session;
    }
    session->Begin();
  };
  if (tls_) {
    remember(std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
        this, beast::ssl_stream<beast::tcp_stream>(std::move(socket), *tls_), peer));
  } else {
    remember(std::make_shared<Session<beast::tcp_stream>>(
        this, beast::tcp_stream(std::move(socket)), peer));
  }
}

void HttpServer::Impl::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (!started_ || stopping_) return;
    stopping_ = true;
  }
  net::post(acceptor_.get_executor(), [this] {
    beast::error_code ignored;
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
  work_.reset();
  ioc_.stop();
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
