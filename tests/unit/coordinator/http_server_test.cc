// HttpServer over real loopback sockets, driven byte by byte the way clients (and attackers)
// do: keep-alive and pipelining, limits on heads and bodies (chunked too) before they are read,
// dripping and idle connections, the per-address connection limit, streaming, and the client
// going away while a handler works. No test sleeps: every wait is a blocking read bounded by a
// receive timeout, or a Notification with a bound.
#include "coordinator/front/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process_harness.h"

namespace loom {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// A raw client socket. Every read gives up after 10 s, so no test can hang.
class Socket {
 public:
  explicit Socket(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~Socket() { Close(); }
  bool connected() const { return connected_; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool Send(const std::string& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
  }
  // Reads until `marker` has arrived (or EOF / timeout); returns everything read so far.
  std::string ReadUntil(const std::string& marker) {
    while (!absl::StrContains(data_, marker)) {
      if (!ReadSome()) break;
    }
    std::string out = data_;
    data_.clear();
    return out;
  }
  // One whole response with a Content-Length body (the head and body as a string).
  std::string ReadResponse() {
    while (true) {
      const size_t end = data_.find("\r\n\r\n");
      if (end != std::string::npos) {
        size_t length = 0;
        const size_t at = data_.find("Content-Length: ");
        if (at != std::string::npos && at < end) {
          (void)absl::SimpleAtoi(data_.substr(at + 16, data_.find("\r\n", at) - at - 16), &length);
        }
        if (data_.size() >= end + 4 + length) {
          std::string out = data_.substr(0, end + 4 + length);
          data_.erase(0, end + 4 + length);
          return out;
        }
      }
      if (!ReadSome()) {
        std::string out = data_;
        data_.clear();
        return out;
      }
    }
  }
  // True when the server closed the connection (EOF or reset) before the timeout.
  bool ClosedByServer() {
    while (true) {
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }

 private:
  bool ReadSome() {
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return false;
    data_.append(buf, static_cast<size_t>(n));
    return true;
  }
  int fd_ = -1;
  bool connected_ = false;
  std::string data_;
};

HttpResponse Error(int status, const std::string& message) {
  HttpResponse r;
  r.status = status;
  r.body = absl::StrCat("{\"error\":\"", message, "\"}");
  return r;
}

constexpr size_t kBig = 24 << 20;  // beyond any loopback socket buffer (tcp_wmem max 4 MiB)

std::string Pattern(size_t n) {
  std::string out(n, 0);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  return out;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void Start(HttpServerOptions options = {}) {
    server_ = std::make_unique<HttpServer>(options, Error,
                                           [](const HttpRequest&, HttpResponse& r) {
                                             r.SetHeader("x-finished", "yes");
                                           });
    server_->Handle("GET", "/hello", [](HttpExchange& ex) {
      HttpResponse r;
      r.body = absl::StrCat("hello ", ex.request().Header("x-name"));
      return r;
    });
    server_->Handle("POST", "/echo", [](HttpExchange& ex) {
      HttpResponse r;
      r.body = ex.request().body;
      return r;
    });
    server_->Handle("GET", "/items/*", [](HttpExchange& ex) {
      HttpResponse r;
      r.body = ex.request().suffix;
      return r;
    });
    server_->Handle(
        "POST", "/guarded",
        [](HttpExchange& ex) {
          HttpResponse r;
          r.body = absl::StrCat("for ", ex.request().principal);
          return r;
        },
        {.head_filter = [](HttpRequest& req) -> std::optional<HttpResponse> {
          if (req.Header("Authorization") != "Bearer good") return Error(401, "bad key");
          req.principal = "alice";
          return std::nullopt;
        }});
    server_->Handle(
        "GET", "/healthz", [](HttpExchange&) { return HttpResponse{.body = "ok"}; },
        {.on_io_thread = true});
    // Blocks until the client goes away (or 10 s), then says whether it saw that.
    server_->Handle("GET", "/wait", [this](HttpExchange& ex) {
      waiting_.Notify();
      saw_gone_ = ex.client_gone()->WaitFor(absl::Seconds(10));
      handler_done_.Notify();
      return HttpResponse{.body = "late"};
    });
    server_->Handle("GET", "/stream", [this](HttpExchange& ex) {
      HttpResponse head;
      head.content_type = "text/event-stream";
      EXPECT_TRUE(ex.StartStream(head));
      for (int i = 0; i < 3; ++i) EXPECT_TRUE(ex.Write(absl::StrCat("data: ", i, "\n\n")));
      waiting_.Notify();
      // Keep writing until the client is gone; bounded.
      bool ok = true;
      for (int i = 0; i < 100000 && ok; ++i) ok = ex.Write(std::string(1024, 'x'));
      saw_gone_ = !ok && ex.client_gone()->IsCancelled();
      handler_done_.Notify();
      return HttpResponse{};
    });
    // Queued bytes go out with the next write; a stream that ends with bytes queued (or with
    // nothing written at all) still delivers its head, those bytes and its end.
    server_->Handle("GET", "/queued", [](HttpExchange& ex) {
      HttpResponse head;
      head.content_type = "text/event-stream";
      EXPECT_TRUE(ex.StartStream(head));
      EXPECT_FALSE(ex.StartStream(head)) << "one head per response";
      EXPECT_TRUE(ex.Queue("data: opening\n\n"));
      EXPECT_TRUE(ex.Write("data: first\n\n"));
      EXPECT_TRUE(ex.Queue("data: closing\n\n"));
      return HttpResponse{};
    });
    server_->Handle("GET", "/head-only", [](HttpExchange& ex) {
      HttpResponse head;
      head.content_type = "text/event-stream";
      EXPECT_TRUE(ex.StartStream(head));
      return HttpResponse{.body = "not sent: the handler streamed"};
    });
    // More than a socket's send buffer at once: the handler's thread sends what the kernel
    // takes and the strand the rest (a pattern, so a lost or reordered byte shows).
    server_->Handle("GET", "/big", [](HttpExchange&) { return HttpResponse{.body = Pattern(kBig)}; });
    server_->Handle("GET", "/big-stream", [](HttpExchange& ex) {
      HttpResponse head;
      head.content_type = "application/octet-stream";
      EXPECT_TRUE(ex.StartStream(head));
      const std::string all = Pattern(kBig);
      EXPECT_TRUE(ex.Write(all.substr(0, kBig / 2)));
      EXPECT_TRUE(ex.Write("x"));
      EXPECT_TRUE(ex.Write(all.substr(kBig / 2 + 1)));
      return HttpResponse{};
    });
    absl::StatusOr<int> port = server_->Start("127.0.0.1", 0);
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *port;
  }

  std::unique_ptr<HttpServer> server_;
  int port_ = 0;
  absl::Notification waiting_, handler_done_;
  std::atomic<bool> saw_gone_{false};
};

TEST_F(HttpServerTest, KeepAliveServesManyRequestsOnOneConnection) {
  Start();
  Socket s(port_);
  ASSERT_TRUE(s.connected());
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(s.Send(absl::StrCat("GET /hello HTTP/1.1\r\nHost: x\r\nx-name: n", i, "\r\n\r\n")));
    const std::string r = s.ReadResponse();
    ASSERT_THAT(r, StartsWith("HTTP/1.1 200")) << i;
    EXPECT_THAT(r, HasSubstr(absl::StrCat("hello n", i)));
    EXPECT_THAT(r, HasSubstr("x-finished: yes"));
  }
}

TEST_F(HttpServerTest, AResponseOrChunkLargerThanTheSocketBufferArrivesWholeAndInOrder) {
  Start();
  Socket s(port_);
  ASSERT_TRUE(s.Send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::string r = s.ReadResponse();
  ASSERT_THAT(r, StartsWith("HTTP/1.1 200"));
  const size_t body = r.find("\r\n\r\n") + 4;
  ASSERT_EQ(r.size() - body, kBig);
  EXPECT_TRUE(r.compare(body, kBig, Pattern(kBig)) == 0) << "bytes lost or out of order";

  // The same connection, streamed: chunks of 12 MiB, 1 byte and 12 MiB.
  ASSERT_TRUE(s.Send("GET /big-stream HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::string stream = s.ReadUntil("\r\n0\r\n\r\n");
  std::string data;
  size_t at = stream.find("\r\n\r\n") + 4;
  while (at < stream.size()) {
    const size_t line = stream.find("\r\n", at);
    ASSERT_NE(line, std::string::npos);
    size_t n = 0;
    ASSERT_TRUE(absl::SimpleHexAtoi(stream.substr(at, line - at), &n)) << stream.substr(at, 20);
    if (n == 0) break;
    data += stream.substr(line + 2, n);
    at = line + 2 + n + 2;
  }
  std::string want = Pattern(kBig);
  want[kBig / 2] = 'x';
  ASSERT_EQ(data.size(), want.size());
  EXPECT_TRUE(data == want) << "bytes lost or out of order";

  // And the connection still serves.
  ASSERT_TRUE(s.Send("GET /hello HTTP/1.1\r\nHost: x\r\nx-name: after\r\n\r\n"));
  EXPECT_THAT(s.ReadResponse(), HasSubstr("hello after"));
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  Start();
  Socket s(port_);
  ASSERT_TRUE(s.Send("GET /items/a HTTP/1.1\r\nHost: x\r\n\r\n"
                     "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde"
                     "GET /items/b HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_THAT(s.ReadResponse(), HasSubstr("\r\n\r\na"));
  EXPECT_THAT(s.ReadResponse(), HasSubstr("\r\n\r\nabcde"));
  EXPECT_THAT(s.ReadResponse(), HasSubstr("\r\n\r\nb"));
}

TEST_F(HttpServerTest, UnknownPathIs404AndWrongMethodIs405InTheServersShape) {
  Start();
  Socket s(port_);
  s.Send("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string r = s.ReadResponse();
  EXPECT_THAT(r, StartsWith("HTTP/1.1 404"));
  EXPECT_THAT(r, HasSubstr("no such endpoint"));
  EXPECT_THAT(r, HasSubstr("x-finished: yes"));
  Socket t(port_);
  t.Send("DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(t.ReadResponse(), StartsWith("HTTP/1.1 405"));
}

TEST_F(HttpServerTest, ABodyOverTheLimitIsRefusedFromItsLengthBeforeItIsSent) {
  Start({.max_body_bytes = 1000});
  Socket s(port_);
  // Only the head is sent: the answer cannot have waited for the body.
  s.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n");
  EXPECT_THAT(s.ReadResponse(), StartsWith("HTTP/1.1 413"));
  EXPECT_TRUE(s.ClosedByServer());
}

TEST_F(HttpServerTest, AChunkedBodyIsCutOffAtTheLimitAsItStreamsIn) {
  Start({.max_body_bytes = 1000});
  Socket s(port_);
  s.Send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
  std::string response;
  // Chunks keep coming (a body of up to 100 MB); the server answers once 1000 bytes are in.
  for (int i = 0; i < 100000; ++i) {
    if (!s.Send(absl::StrCat("200\r\n", std::string(0x200, 'a'), "\r\n"))) break;
    if (i == 3) break;  // 2 KiB sent: already past the limit
  }
  response = s.ReadResponse();
  EXPECT_THAT(response, StartsWith("HTTP/1.1 413"));
  EXPECT_THAT(response, HasSubstr("too large"));
}

TEST_F(HttpServerTest, AHeadFilterRefusesBeforeTheBodyIsReadAndNamesThePrincipalOtherwise) {
  Start();
  Socket s(port_);
  s.Send("POST /guarded HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bad\r\nContent-Length: 500000\r\n\r\n");
  EXPECT_THAT(s.ReadResponse(), StartsWith("HTTP/1.1 401"));
  Socket t(port_);
  t.Send("POST /guarded HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\nContent-Length: 2\r\n\r\nhi");
  EXPECT_THAT(t.ReadResponse(), HasSubstr("for alice"));
}

TEST_F(HttpServerTest, AnOversizedHeadIs431) {
  Start({.max_header_bytes = 2048});
  Socket s(port_);
  s.Send(absl::StrCat("GET /hello HTTP/1.1\r\nHost: x\r\nx-big: ", std::string(4096, 'b'), "\r\n\r\n"));
  EXPECT_THAT(s.ReadResponse(), StartsWith("HTTP/1.1 431"));
}

TEST_F(HttpServerTest, MalformedRequestsGet400) {
  Start();
  Socket s(port_);
  s.Send("GET /hello HTTP/1.1\r\nHost x\r\n\r\n");
  EXPECT_THAT(s.ReadResponse(), StartsWith("HTTP/1.1 400"));
}

TEST_F(HttpServerTest, ADrippingClientIsCutOffAtTheRequestDeadline) {
  Start({.request_read_timeout = absl::Milliseconds(200)});
  Socket s(port_);
  ASSERT_TRUE(s.Send("GET /hel"));  // and nothing more
  EXPECT_TRUE(s.ClosedByServer());
  // The deadline closes the socket first and is counted just after: waited for, bounded.
  EXPECT_TRUE(loom::testing::WaitFor([&] { return server_->stats().timed_out >= 1; },
                                     absl::Seconds(10)));
}

TEST_F(HttpServerTest, AnIdleKeepAliveConnectionIsClosedAfterItsTimeout) {
  Start({.keep_alive_timeout = absl::Milliseconds(100)});
  Socket s(port_);
  s.Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(s.ReadResponse(), StartsWith("HTTP/1.1 200"));
  EXPECT_TRUE(s.ClosedByServer());
}

TEST_F(HttpServerTest, ConnectionsPastThePerAddressLimitAreClosedAtOnce) {
  Start({.max_connections_per_peer = 2});
  Socket a(port_), b(port_);
  // Both are served (so both are counted before the third arrives).
  a.Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  b.Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_THAT(a.ReadResponse(), StartsWith("HTTP/1.1 200"));
  ASSERT_THAT(b.ReadResponse(), StartsWith("HTTP/1.1 200"));
  Socket c(port_);
  EXPECT_TRUE(c.ClosedByServer());
  EXPECT_EQ(server_->stats().refused_connections, 1);
  a.Close();
  // Once one closes, a new one is served again (the count is released with the connection).
  bool served = false;
  for (int i = 0; i < 200 && !served; ++i) {
    Socket d(port_);
    d.Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    served = absl::StartsWith(d.ReadResponse(), "HTTP/1.1 200");
  }
  EXPECT_TRUE(served);
}

TEST_F(HttpServerTest, TheClientGoingAwayCancelsTheRunningHandler) {
  Start();
  {
    Socket s(port_);
    s.Send("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(waiting_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  }  // closed
  ASSERT_TRUE(handler_done_.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_TRUE(saw_gone_);
}

TEST_F(HttpServerTest, ProbesOnTheIoThreadsAnswerWhileHandlersBlock) {
  Start();
  Socket busy(port_);
  busy.Send("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(waiting_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  for (int i = 0; i < 20; ++i) {
    Socket probe(port_);
    probe.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_THAT(probe.ReadResponse(), HasSubstr("\r\n\r\nok"));
  }
  busy.Close();
  ASSERT_TRUE(handler_done_.WaitForNotificationWithTimeout(absl::Seconds(20)));
}

TEST_F(HttpServerTest, AStreamIsChunkedAndItsWritesFailOnceTheClientLeaves) {
  Start();
  {
    Socket s(port_);
    s.Send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    const std::string head = s.ReadUntil("data: 2");
    EXPECT_THAT(head, StartsWith("HTTP/1.1 200"));
    EXPECT_THAT(head, HasSubstr("Transfer-Encoding: chunked"));
    EXPECT_THAT(head, HasSubstr("x-finished: yes"));
    EXPECT_THAT(head, HasSubstr("data: 0"));
    ASSERT_TRUE(waiting_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  }
  ASSERT_TRUE(handler_done_.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_TRUE(saw_gone_);
}

TEST_F(HttpServerTest, QueuedBytesLeaveWithTheNextWriteOrTheEndOfTheStream) {
  Start();
  Socket s(port_);
  for (int i = 0; i < 2; ++i) {  // twice on one connection: the stream ended cleanly
    s.Send("GET /queued HTTP/1.1\r\nHost: x\r\n\r\n");
    const std::string r = s.ReadUntil("0\r\n\r\n");
    EXPECT_THAT(r, StartsWith("HTTP/1.1 200"));
    const size_t opening = r.find("data: opening"), first = r.find("data: first"),
                 closing = r.find("data: closing");
    ASSERT_NE(opening, std::string::npos) << r;
    ASSERT_NE(first, std::string::npos) << r;
    ASSERT_NE(closing, std::string::npos) << r;
    EXPECT_LT(opening, first);
    EXPECT_LT(first, closing);
  }
  s.Send("GET /head-only HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string r = s.ReadUntil("0\r\n\r\n");
  EXPECT_THAT(r, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(r, HasSubstr("Transfer-Encoding: chunked"));
  EXPECT_THAT(r, ::testing::Not(HasSubstr("not sent")));
}

TEST_F(HttpServerTest, StopEndsIdleConnectionsAndCanBeCalledTwice) {
  Start();
  Socket s(port_);
  s.Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_THAT(s.ReadResponse(), StartsWith("HTTP/1.1 200"));
  server_->Stop();
  EXPECT_TRUE(s.ClosedByServer());
  server_->Stop();
}

}  // namespace
}  // namespace loom
