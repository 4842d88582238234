#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <spdlog/spdlog.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/front/http_server_impl.h"

// One HTTP/1.x connection of the front door's server (http_server.cc accepts and stops them).

namespace loom {
namespace http_internal {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;

constexpr size_t kReadChunk = 8 << 10;
constexpr size_t kMaxDrainBytes = 1 << 20;
constexpr auto kDrainTime = std::chrono::seconds(2);

std::chrono::steady_clock::duration Chrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}


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

  void Begin() override {
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
    size_t sent = 0;
    if constexpr (!kTls) {
      sent = SendNow(out);
      if (sent == std::string::npos) return false;
      if (sent == out.size()) return !gone_->IsCancelled();
    }
    const bool first = !strand_wrote_;
    strand_wrote_ = true;
    return WriteOnStrand(out.substr(sent), /*start=*/first);
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
      // Plain TCP: a whole (not streamed) response goes out from this thread, one thread
      // hand-off sooner; the strand then only reads the next request.
      std::shared_ptr<std::string> bytes;
      size_t sent = 0;
      if constexpr (!kTls) {
        bool streamed = false;
        {
          absl::MutexLock lock(&self->write_mu_);
          streamed = self->stream_started_;
        }
        if (!streamed) {
          std::ostringstream out;
          out << *self->Message(std::move(response));
          bytes = std::make_shared<std::string>(std::move(out).str());
          sent = self->SendNow(*bytes);
        }
      }
      net::post(self->stream_.get_executor(), [self, response = std::move(response), bytes,
                                               sent]() mutable {
        self->handler_running_ = false;
        self->StopWatching();
        if (bytes) return self->SendRest(std::move(bytes), sent);
        // The handler is done: what it queued (a head with nothing written after it, or
        // bytes after the last Write) goes out with the end of the stream.
        std::string rest;
        bool streamed = false;
        {
          absl::MutexLock lock(&self->write_mu_);
          streamed = self->stream_started_;
          rest = std::move(self->queued_);
          self->queued_.clear();
          self->stream_started_ = self->strand_wrote_ = false;
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

  // Plain TCP, from a handler's thread: sends what the kernel takes at once, without waking the
  // strand (a chunk reaches the client one thread hand-off sooner, and the handler does not wait
  // for the strand to report back). While a handler runs the strand writes nothing to the socket
  // (it only waits for it to turn readable, Watch), so the two never interleave; send_mu_ keeps
  // CloseNow from closing the socket under a send. Returns the bytes sent, or npos when the
  // client is gone.
  size_t SendNow(std::string_view bytes) {
    absl::MutexLock lock(&send_mu_);
    if (socket_closed_) return std::string::npos;
    const int fd = tcp().socket().native_handle();
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;  // the rest waits on the strand, under the write timeout
      } else {
        gone_->Cancel();
        net::post(stream_.get_executor(), [self = this->shared_from_this()] { self->CloseNow(); });
        return std::string::npos;
      }
    }
    return sent;
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

  // The message for a whole response (from the strand, or the handler's thread once it has
  // returned: what it reads is left alone until the strand resumes).
  std::shared_ptr<http::response<http::string_body>> Message(HttpResponse response) {
    server_->Finish(request_, response);
    auto res = std::make_shared<http::response<http::string_body>>(
        http::int_to_status(response.status), version_);
    res->result(static_cast<unsigned>(response.status));
    for (auto& [name, value] : response.headers) res->set(name, value);
    res->set(http::field::content_type, response.content_type);
    res->body() = std::move(response.body);
    res->keep_alive(keep_alive_);
    res->prepare_payload();
    return res;
  }

  // After SendNow took `sent` bytes of a whole response (npos: the client is gone): the rest
  // on the strand, then the next request.
  void SendRest(std::shared_ptr<std::string> bytes, size_t sent) {
    if (closed_ || sent == std::string::npos) return;
    if (sent == bytes->size()) return AfterResponse();
    tcp().expires_after(Chrono(server_->options().write_timeout));
    net::async_write(stream_, net::buffer(bytes->data() + sent, bytes->size() - sent),
                     [self = this->shared_from_this(), bytes](beast::error_code ec, size_t) {
                       if (ec) return self->CloseNow();
                       self->AfterResponse();
                     });
  }

  void Send(HttpResponse response) {
    if (closed_) return;
    auto res = Message(std::move(response));
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
    absl::MutexLock lock(&send_mu_);  // not while a handler's SendNow uses the socket
    socket_closed_ = true;
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
  bool strand_wrote_ ABSL_GUARDED_BY(write_mu_) = false;  // a write of this stream went via the strand
  absl::Mutex send_mu_ ABSL_ACQUIRED_AFTER(write_mu_);
  bool socket_closed_ ABSL_GUARDED_BY(send_mu_) = false;
  std::string queued_ ABSL_GUARDED_BY(write_mu_);  // the head and bytes not yet written
  bool closed_ = false;
  size_t drained_ = 0;
};

}  // namespace

std::shared_ptr<Connection> MakeSession(HttpServer::Impl* server, tcp::socket socket,
                                        ssl::context* tls, std::string peer) {
  if (tls != nullptr) {
    using TlsStream = beast::ssl_stream<beast::tcp_stream>;
    return std::make_shared<Session<TlsStream>>(server, TlsStream(std::move(socket), *tls),
                                                std::move(peer));
  }
  return std::make_shared<Session<beast::tcp_stream>>(server, beast::tcp_stream(std::move(socket)),
                                                      std::move(peer));
}

}  // namespace http_internal
}  // namespace loom
