// Fuzzes the HTTP front door end to end, in one process: a real HttpFrontDoor on loopback, its
// RequestRunner on a FakeDeviceClient (one device) and an in-memory ledger. Each input is
//   byte 0          the route: chat or responses, streamed or not
//   bytes until FF FE   the request body (any bytes: multibyte, invalid UTF-8, NUL, JSON type
//                       confusion)
//   the rest        what the device answers, in chunks of up to 7 bytes (invalid UTF-8 too)
// sent as one HTTP/1.1 request over a loopback socket. Whatever the bytes:
//  - the door answers, with a status it documents;
//  - every byte it sends is valid UTF-8, every JSON body parses, every SSE data line is JSON
//    or [DONE];
//  - a refused request (not 200) charges nothing, and the ledger always verifies.
// The process aborting (ASan, UBSan, an escaped exception, std::terminate) is a find too.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/protocol.h"
#include "common/utf8.h"
#include "coordinator/front/admission.h"
#include "coordinator/front/authenticator.h"
#include "coordinator/front/http_front_door.h"
#include "coordinator/pipeline/metrics.h"
#include "coordinator/mesh/model_selector.h"
#include "coordinator/mesh/registry.h"
#include "coordinator/pipeline/request_runner.h"
#include "fuzz/fuzz_check.h"
#include "ledger/sqlite_ledger.h"
#include "nlohmann/json.hpp"
#include "tests/fakes/fake_device_client.h"

namespace {

using nlohmann::json;

constexpr int64_t kGranted = 1'000'000'000'000;

struct Mesh {
  Mesh() {
    ledger = *loom::SqliteLedger::Open({.path = ":memory:"});
    (void)ledger->Grant(loom::ClientAccount("fuzz"), kGranted, "fuzz");
    loom::v1::RegisterRequest r;
    r.mutable_protocol_version()->set_major(loom::kProtocolMajor);
    r.set_device_id("dev");
    r.set_provider_id("prov");
    r.set_address("dev:1");
    auto* m = r.add_models();
    m->set_name("m");
    m->set_family("llama");
    m->set_parameters_b(8);
    for (const char* c : {"tools", "json_schema", "continue"}) m->add_capabilities(c);
    r.mutable_load()->set_max_concurrency(64);
    r.set_simulated(true);
    (void)registry.Register(r);
    runner = std::make_unique<loom::RequestRunner>(loom::RunnerOptions{}, &registry, &selector,
                                                   &devices, ledger.get(),
                                                   loom::Clock::Real(), &metrics);
    auth = std::make_unique<loom::Authenticator>(ledger.get(), "fuzz");
    loom::HttpOptions http_options;
    http_options.request_timeout = absl::Seconds(10);
    door = std::make_unique<loom::HttpFrontDoor>(http_options, runner.get(), &registry,
                                                 auth.get(), &admission, &metrics);
    auto bound = door->Start("127.0.0.1:0");
    FUZZ_CHECK(bound.ok());
    port = std::atoi(bound->substr(bound->rfind(':') + 1).c_str());
  }

  loom::DeviceRegistry registry{{}, loom::Clock::Real()};
  loom::ModelSelector selector;
  loom::FakeDeviceClient devices;
  loom::Metrics metrics;
  loom::Admission admission{{.slots = 8, .max_waiting = 8, .max_running_per_client = 0}};
  std::unique_ptr<loom::SqliteLedger> ledger;
  std::unique_ptr<loom::RequestRunner> runner;
  std::unique_ptr<loom::Authenticator> auth;
  std::unique_ptr<loom::HttpFrontDoor> door;
  int port = 0;
};

Mesh& TheMesh() {
  static Mesh* mesh = new Mesh();  // lives for the process, as libFuzzer runs
  return *mesh;
}

// One request on a fresh connection; the whole response as sent ("" if none within 10 s).
std::string Exchange(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  FUZZ_CHECK(fd >= 0);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // libFuzzer's -timeout alarm interrupts system calls: EINTR is retried everywhere here.
  int connected;
  do {
    connected = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  } while (connected != 0 && errno == EINTR);
  if (connected != 0 && errno != EISCONN) {
    const int error = errno;
    int open_fds = 0;
    for (int i = 0; i < 65536; ++i) open_fds += fcntl(i, F_GETFD) != -1;
    std::fprintf(stderr, "connect to the door failed: %s (%d descriptors open)\n",
                 std::strerror(error), open_fds);
    std::abort();
  }
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buf[16384];
  const absl::Time start = absl::Now();
  while (true) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (response.empty()) {
        std::fprintf(stderr, "no response: recv %zd (%s) after %s\n", n,
                     n < 0 ? std::strerror(errno) : "closed",
                     absl::FormatDuration(absl::Now() - start).c_str());
      }
      break;
    }
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return response;
}

// The body of a chunked response.
std::string Dechunk(absl::string_view raw) {
  std::string out;
  while (!raw.empty()) {
    const size_t eol = raw.find("\r\n");
    if (eol == absl::string_view::npos) break;
    size_t size = 0;
    if (!absl::SimpleHexAtoi(raw.substr(0, eol), &size) || size == 0) break;
    raw.remove_prefix(eol + 2);
    if (raw.size() < size) break;
    out.append(raw.data(), size);
    raw.remove_prefix(std::min(raw.size(), size + 2));
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  Mesh& mesh = TheMesh();
  const std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t cut = input.find("\xFF\xFE");
  const std::string body = input.substr(0, cut);
  const std::string reply = cut == std::string::npos ? "" : input.substr(cut + 2);
  loom::FakeDeviceClient::Script script;
  script.chunks.clear();
  for (size_t at = 0; at < reply.size(); at += 7) script.chunks.push_back(reply.substr(at, 7));
  if (script.chunks.empty()) script.chunks = {" hello"};
  mesh.devices.Set("dev:1", script);

  const bool responses = data[0] & 1;
  const char* path = responses ? "/v1/responses" : "/v1/chat/completions";
  const std::string request =
      absl::StrCat("POST ", path, " HTTP/1.1\r\nHost: fuzz\r\nContent-Type: application/json\r\n",
                   "Connection: close\r\nContent-Length: ", body.size(), "\r\n\r\n", body);
  const int64_t before = *mesh.ledger->Balance(loom::ClientAccount("fuzz"));
  const std::string response = Exchange(mesh.port, request);

  FUZZ_CHECK(response.rfind("HTTP/1.1 ", 0) == 0);
  int status = 0;
  FUZZ_CHECK(absl::SimpleAtoi(response.substr(9, 3), &status));
  FUZZ_CHECK(status == 200 || status == 400 || status == 402 || status == 404 || status == 409 ||
             status == 413 || status == 429 || status == 499 || status == 500 || status == 503 ||
             status == 504);
  FUZZ_CHECK(status != 500);  // every failure has a documented status
  FUZZ_CHECK(loom::IsValidUtf8(response));
  const size_t head_end = response.find("\r\n\r\n");
  FUZZ_CHECK(head_end != std::string::npos);
  const std::string head = response.substr(0, head_end);
  std::string payload = response.substr(head_end + 4);
  if (head.find("chunked") != std::string::npos) payload = Dechunk(payload);
  if (head.find("text/event-stream") != std::string::npos) {
    for (absl::string_view line : absl::StrSplit(payload, '\n', absl::SkipEmpty())) {
      if (!absl::ConsumePrefix(&line, "data: ") || line == "[DONE]") continue;
      FUZZ_CHECK(!json::parse(line, nullptr, false).is_discarded());
    }
  } else {
    FUZZ_CHECK(!json::parse(payload, nullptr, false).is_discarded());
  }
  if (status != 200) {
    FUZZ_CHECK(*mesh.ledger->Balance(loom::ClientAccount("fuzz")) == before);
  }
  static int runs = 0;
  if (++runs % 256 == 0) FUZZ_CHECK(mesh.ledger->Verify()->ok);
  return 0;
}
