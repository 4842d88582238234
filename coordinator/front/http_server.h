// File: coordinator/front/http_server.h
// The HTTP/1.1 server under the front door, on Boost.Beast and Asio (Debian libboost-dev).
//
// Event-driven: two I/O threads hold every connection, so idle keep-alive connections and
// dripping clients cost a few KiB each, not a thread. A handler runs on a thread of its own
// (reused from a ThreadCache) only while it works, and may block there; routes marked
// `on_io_thread` (probes, scrapes) run on the I/O threads at once, so they answer under any
// load of requests.
//
//   HttpServer server(options);
//   server.Handle("GET", "/healthz", [](HttpExchange&) { return HttpResponse{...}; },
//                 {.on_io_thread = true});
//   server.Handle("GET", "/v1/models/*", ...);   // a trailing * matches any suffix
//   absl::StatusOr<int> port = server.Start("127.0.0.1", 0);
//
// Limits, each enforced before the work it bounds:
//   - connections: at most max_connections at once and max_connections_per_peer from one
//     address; past either, a new connection is closed at once (and counted).
//   - time: an idle keep-alive connection is closed after keep_alive_timeout; once a request's
//     first byte arrives, its whole head and body must arrive within request_read_timeout (a
//     client dripping bytes is cut off); a response the client does not take within
//     write_timeout closes the connection.
//   - size: the head at most max_header_bytes (431); the body at most max_body_bytes as it
//     streams in, chunked or not (413, from Content-Length before any of it is read); a
//     route's head_filter (authentication) may answer before the body is read at all.
// The client going away: while a handler runs, the connection is watched (a non-consuming
// wait on the socket); when the client closes or resets it, the exchange's cancellation fires
// at once, so the work stops (and is billed as the front door's rule says).
//
// What it does not do: HTTP/2, Upgrade (WebSocket), trailers, compression, range requests;
// pipelined requests are answered in order, and while one waits behind another a client
// closing the connection is seen only once the earlier response is written.
//
// Thread-safe: Handle before Start; Start and Stop from one thread.
#ifndef LOOM_COORDINATOR_FRONT_HTTP_SERVER_H_
#define LOOM_COORDINATOR_FRONT_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cancellation.h"

namespace loom {

struct HttpServerOptions {
  int io_threads = 2;
  int max_connections = 4096;
  int max_connections_per_peer = 512;  // 0: no limit per address
  absl::Duration keep_alive_timeout = absl::Seconds(15);
  int keep_alive_max_requests = 10000;
  absl::Duration request_read_timeout = absl::Seconds(10);
  absl::Duration write_timeout = absl::Seconds(30);
  size_t max_header_bytes = 16 << 10;
  size_t max_body_bytes = 1 << 20;
  std::string tls_cert;  // PEM files; both set: serve HTTPS
  std::string tls_key;
};

struct HttpRequest {
  std::string method;  // "GET"
  std::string target;  // "/v1/models/x?y=1"
  std::string path;    // "/v1/models/x"
  std::string suffix;  // what a route's trailing * matched ("x")
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string peer;       // the client's address
  std::string principal;  // set by a route's head filter for its handler (who sent it)

  // The first header called `name` (case-insensitive), or "".
  std::string Header(std::string_view name) const;
  bool HasHeader(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body = {};
  std::vector<std::pair<std::string, std::string>> headers = {};

  void SetHeader(std::string name, std::string value);  // replaces one of the same name
  bool HasHeader(std::string_view name) const;
};

// One request and its response, as a handler sees it.
class HttpExchange {
 public:
  virtual ~HttpExchange() = default;
  virtual const HttpRequest& request() const = 0;
  // Fires when the client goes away before the response is complete. The handler may also
  // cancel it (its work then stops the same way).
  virtual Cancellation* client_gone() = 0;
  // Streaming instead of returning a whole response: StartStream sends the status and
  // headers (the body is ignored) with chunked transfer encoding, each Write sends what it is
  // given, and the stream ends when the handler returns. The head goes out with the first
  // bytes written (one write, not two). Write blocks until the bytes are written
  // (back-pressure); both return false once the client is gone. Thread-safe.
  virtual bool StartStream(const HttpResponse& head) = 0;
  virtual bool Write(std::string_view data) = 0;
  // Bytes that need not leave before the next Write (a stream's opening event): the status
  // line, the headers and queued bytes go out together with it, in one write, or when the
  // handler returns. False once the client is gone.
  virtual bool Queue(std::string_view data) = 0;
};

// Returns the response; ignored when the handler streamed.
using HttpHandler = std::function<HttpResponse(HttpExchange&)>;
// Looks at a request's head (body empty) before its body is read, on an I/O thread (so it
// must not block for long): a response refuses the request; it may set `principal`.
using HttpHeadFilter = std::function<std::optional<HttpResponse>(HttpRequest&)>;

struct RouteOptions {
  bool on_io_thread = false;  // cheap and never blocking: answered without a handler thread
  HttpHeadFilter head_filter = {};
};

struct HttpServerStats {
  int connections = 0;          // open now
  int handlers = 0;             // running now
  int64_t refused_connections = 0;  // closed at accept (over a limit)
  int64_t timed_out = 0;            // closed for a read or write deadline
};

class HttpServer {
 public:
  // `error` renders the server's own refusals (404, 405, 413, 431, 400, 500); `finish` sees
  // every response and stream head before it is sent (e.g. to add x-request-id).
  using ErrorRenderer = std::function<HttpResponse(int status, const std::string& message)>;
  using Finisher = std::function<void(const HttpRequest&, HttpResponse&)>;

  HttpServer(HttpServerOptions options, ErrorRenderer error, Finisher finish);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // `path` is exact, or a prefix when it ends with '*'. Before Start.
  void Handle(std::string method, std::string path, HttpHandler handler,
              RouteOptions options = {});

  // Binds and serves; returns the bound port. INVALID_ARGUMENT for a TLS file that cannot be
  // loaded, UNAVAILABLE when the address cannot be bound.
  absl::StatusOr<int> Start(const std::string& host, int port);
  // Stops accepting, cancels running handlers' exchanges and waits for them, closes every
  // connection. Idempotent.
  void Stop();

  HttpServerStats stats() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_FRONT_HTTP_SERVER_H_
