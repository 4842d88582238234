// File: coordinator/front/sse_stream.h
// Server-Sent Events responses of the HTTP door. SseWriter writes a chat completion stream as
// its text arrives: a role chunk per choice first (leaving with the first text), then the
// text, then (Finish) each choice's last chunk with the loom object, an optional usage chunk
// and [DONE]; a failure after text was sent is reported in-band. LazyEventStream is the
// Responses and Completions streams' plain event writer. Both send their headers with the
// first event, so a request that fails before any gets a plain HTTP error status, and both
// cancel the request when a write finds the client gone.
//
// Not thread-safe: one per response, used by the handler thread that owns the exchange.
#ifndef LOOM_COORDINATOR_FRONT_SSE_STREAM_H_
#define LOOM_COORDINATOR_FRONT_SSE_STREAM_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "coordinator/front/http_server.h"
#include "loom/v1/orchestrator.pb.h"
#include "absl/strings/str_cat.h"
#include "common/json_dump.h"
#include "coordinator/front/openai_codec.h"
#include "nlohmann/json.hpp"

namespace loom {

// Writes a streamed answer as Server-Sent Events as its text arrives: a role chunk first, then
// the text, then (Finish) a final chunk with the loom object, an optional usage chunk and
// [DONE]; a failure after text was sent is reported in-band. Headers go out with the first
// text, so a request that fails before any gets a plain HTTP error status.
class SseWriter {
 public:
  SseWriter(HttpExchange* exchange, HttpResponse head, std::string id, int64_t created,
            std::string model, int choices)
      : exchange_(exchange), head_(std::move(head)), id_(std::move(id)), created_(created),
        model_(std::move(model)), choices_(choices) {}

  bool started() const { return started_; }

  // Text of choice `index`. False once the client is gone (the request is then cancelled).
  bool Text(const std::string& text, int index = 0) {
    if (!Start()) return false;
    return Send(Chunk({{"content", text}}, nullptr, index));
  }

  void Finish(const absl::StatusOr<v1::CompleteResponse>& result, bool include_usage) {
    if (!Start()) return;
    if (!result.ok()) {
      // Text was already sent: report the failure in-band, as OpenAI-compatible servers do.
      const int http = http_codec::HttpStatusFor(result.status());
      Send(http_codec::ErrorBody(http, std::string(result.status().message())));
    } else {
      const std::vector<v1::Choice> choices = http_codec::Choices(*result);
      for (size_t i = 0; i < choices.size(); ++i) {
        const v1::Choice& c = choices[i];
        const int index = static_cast<int>(i);
        if (!c.tool_calls_json().empty()) {
          Send(Chunk({{"tool_calls", http_codec::ToolCallsDelta(c.tool_calls_json())}}, nullptr, index));
        }
        nlohmann::json last = Chunk(nlohmann::json::object(), c.finish_reason().empty() ? "stop" : c.finish_reason(), index);
        // The tokens' log probabilities, whole, with the choice's last chunk (clients append
        // each chunk's logprobs.content).
        last["choices"][0]["logprobs"] = http_codec::Logprobs(c);
        if (i + 1 == choices.size()) last["loom"] = http_codec::LoomObject(*result);
        Send(last);
      }
      if (include_usage) {
        Send({{"id", id_}, {"object", "chat.completion.chunk"}, {"created", created_},
              {"model", model_}, {"choices", nlohmann::json::array()}, {"usage", http_codec::Usage(*result)}});
      }
    }
    if (ok_) ok_ = exchange_->Write("data: [DONE]\n\n");
  }

 private:
  bool Start() {
    if (started_) return ok_;
    started_ = true;
    head_.content_type = "text/event-stream";
    head_.SetHeader("Cache-Control", "no-cache");
    ok_ = exchange_->StartStream(head_);
    // The opening role chunks leave with the first token (one write, not three).
    for (int i = 0; i < choices_ && ok_; ++i) {
      ok_ = exchange_->Queue(absl::StrCat(
          "data: ", DumpJson(Chunk({{"role", "assistant"}, {"content", ""}}, nullptr, i)), "\n\n"));
    }
    if (!ok_) exchange_->client_gone()->Cancel();
    return ok_;
  }

  nlohmann::json Chunk(const nlohmann::json& delta, const nlohmann::json& finish, int index = 0) const {
    return nlohmann::json{{"id", id_}, {"object", "chat.completion.chunk"}, {"created", created_},
                {"model", model_},
                {"choices", {{{"index", index}, {"delta", delta}, {"finish_reason", finish}}}}};
  }

  bool Send(const nlohmann::json& chunk) {
    if (ok_) ok_ = exchange_->Write(absl::StrCat("data: ", DumpJson(chunk), "\n\n"));
    if (!ok_) exchange_->client_gone()->Cancel();  // the client went away: stop the work
    return ok_;
  }

  HttpExchange* const exchange_;
  HttpResponse head_;
  const std::string id_;
  const int64_t created_;
  const std::string model_;
  const int choices_;
  bool started_ = false;
  bool ok_ = true;
};

// A Server-Sent Events response that starts with its first event, so a request that fails
// before any text gets a plain HTTP error status (the Responses and Completions streams).
// Send is false once the client is gone, and then cancels the request.
class LazyEventStream {
 public:
  LazyEventStream(HttpExchange* exchange, HttpResponse head)
      : exchange_(exchange), head_(std::move(head)) {}

  bool started() const { return started_; }

  // `first` goes out ahead of the first event (a stream's opening event), "" for none.
  bool Send(const std::string& bytes, const std::string& first = "") {
    if (!started_) {
      started_ = true;
      head_.content_type = "text/event-stream";
      head_.SetHeader("Cache-Control", "no-cache");
      ok_ = exchange_->StartStream(head_);
      if (ok_ && !first.empty()) ok_ = exchange_->Queue(first);  // leaves with `bytes`
    }
    return Write(bytes);
  }

 private:
  bool Write(const std::string& bytes) {
    if (ok_) ok_ = exchange_->Write(bytes);
    if (!ok_) exchange_->client_gone()->Cancel();  // the client went away: stop the work
    return ok_;
  }

  HttpExchange* const exchange_;
  HttpResponse head_;
  bool started_ = false;
  bool ok_ = true;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_FRONT_SSE_STREAM_H_
