#include "worker/sim_provider.h"

#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/tokens.h"

namespace loom {
namespace {

constexpr const char* kVocabulary[] = {
    "the",      "model",   "device",    "answer",  "token",    "stream",  "graph",   "task",
    "result",   "mesh",    "request",   "value",   "function", "memory",  "type",    "error",
    "handling", "compile", "parallel",  "order",   "depends",  "output",  "context", "step",
    "first",    "then",    "therefore", "because", "example",  "summary", "data",    "system"};

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

std::string LastUserMessage(const GenerateRequest& request) {
  for (auto it = request.messages.rbegin(); it != request.messages.rend(); ++it) {
    if (it->role() == "user") return it->content();
  }
  return request.messages.empty() ? "" : request.messages.back().content();
}

}  // namespace

SimProvider::SimProvider(SimProviderOptions options) : options_(std::move(options)) {
  if (!options_.exit_process) options_.exit_process = [] { std::_Exit(75); };
}

std::vector<std::string> SimProvider::AnswerPieces(const GenerateRequest& request,
                                                   std::string* finish_reason) const {
  int64_t target = options_.backend.output_tokens() > 0 ? options_.backend.output_tokens()
                                                        : kDefaultOutputTokens;
  *finish_reason = "stop";
  if (request.max_tokens > 0 && request.max_tokens < target) {
    target = request.max_tokens;
    *finish_reason = "length";  // cut by the client's limit, as a real model would be
  }

  std::vector<std::string> pieces = {" [simulated]", absl::StrCat(" ", options_.model),
                                     " on", absl::StrCat(" ", options_.device_id), " re:"};
  const std::string prompt = LastUserMessage(request);
  int echoed = 0;
  for (absl::string_view word : absl::StrSplit(prompt, absl::ByAnyChar(" \n\t"), absl::SkipEmpty())) {
    if (++echoed > 8) break;
    pieces.push_back(absl::StrCat(" ", word));
  }
  pieces.push_back(" --");
  int64_t total = 0;
  for (const auto& p : pieces) total += CountTokens(p);
  uint64_t h = Fnv1a(prompt) ^ Fnv1a(options_.model);
  while (total < target) {
    h = h * 6364136223846793005ULL + 1442695040888963407ULL;
    pieces.push_back(absl::StrCat(" ", kVocabulary[(h >> 33) % std::size(kVocabulary)]));
    total += 1;  // every vocabulary word is one token
  }
  // Trim from the end so that exactly `target` tokens or fewer remain.
  int64_t count = 0;
  std::vector<std::string> out;
  for (auto& p : pieces) {
    int64_t t = CountTokens(p);
    if (count + t > target) break;
    count += t;
    out.push_back(std::move(p));
  }
  // Honour stop sequences as a real server does: the answer ends before the earliest one.
  const std::string joined = absl::StrJoin(out, "");
  size_t cut = std::string::npos;
  for (const std::string& stop : request.sampling.stop()) {
    if (!stop.empty()) cut = std::min(cut, joined.find(stop));
  }
  if (cut != std::string::npos) {
    *finish_reason = "stop";
    std::vector<std::string> kept;
    size_t at = 0;
    for (std::string& p : out) {
      if (at + p.size() > cut) {
        if (cut > at) kept.push_back(p.substr(0, cut - at));
        break;
      }
      at += p.size();
      kept.push_back(std::move(p));
    }
    out = std::move(kept);
  }
  return out;
}

absl::StatusOr<v1::InferChunk> SimProvider::Generate(const GenerateRequest& request,
                                                const TokenSink& sink,
                                                const Cancellation& cancel) {
  if (request.messages.empty()) return absl::InvalidArgumentError("no messages");
  const v1::SimBackend& b = options_.backend;
  const v1::SimFault& fault = b.fault();

  // Waits `d` unless cancelled or past the deadline first.
  auto wait = [&](absl::Duration d) -> absl::Status {
    absl::Duration left = request.deadline - absl::Now();
    bool past_deadline = left < d;
    if (cancel.WaitFor(past_deadline ? left : d)) return absl::CancelledError("cancelled");
    if (past_deadline) return absl::DeadlineExceededError("simulated device: deadline exceeded");
    return absl::OkStatus();
  };

  v1::Usage usage;
  for (const auto& m : request.messages) usage.set_prompt_tokens(usage.prompt_tokens() + CountTokens(m.content()));

  if (b.time_to_first_token_ms() > 0) {
    if (auto s = wait(absl::Milliseconds(b.time_to_first_token_ms())); !s.ok()) return s;
  }
  const absl::Duration per_token =
      b.tokens_per_second() > 0 ? absl::Seconds(1.0 / b.tokens_per_second()) : absl::ZeroDuration();

  int64_t emitted = 0;
  auto inject_fault = [&]() -> absl::Status {
    switch (fault.kind()) {
      case v1::SimFault::KIND_FAIL:
        return absl::UnavailableError(
            absl::StrCat("simulated fault: failed after ", emitted, " tokens"));
      case v1::SimFault::KIND_HANG:
        if (cancel.WaitFor(request.deadline - absl::Now())) return absl::CancelledError("cancelled");
        return absl::DeadlineExceededError(
            absl::StrCat("simulated fault: hung after ", emitted, " tokens"));
      case v1::SimFault::KIND_EXIT:
        options_.exit_process();
        return absl::InternalError("simulated fault: exit");  // reached only in tests
      default:
        return absl::OkStatus();
    }
  };

  std::string finish_reason = "stop";
  for (const std::string& piece : AnswerPieces(request, &finish_reason)) {
    if (fault.kind() != v1::SimFault::KIND_NONE && emitted >= fault.after_tokens()) {
      return inject_fault();
    }
    if (per_token > absl::ZeroDuration()) {
      if (auto s = wait(per_token); !s.ok()) return s;
    } else if (cancel.IsCancelled()) {
      return absl::CancelledError("cancelled");
    } else if (absl::Now() > request.deadline) {
      return absl::DeadlineExceededError("simulated device: deadline exceeded");
    }
    if (!sink(piece)) return absl::CancelledError("consumer went away");
    emitted += CountTokens(piece);
  }
  if (fault.kind() != v1::SimFault::KIND_NONE) return inject_fault();
  usage.set_completion_tokens(emitted);
  if (options_.backend.usage_claim_factor() > 1) {
    // The labelled lying-device fault: claim more than was sent.
    usage.set_completion_tokens(
        static_cast<int64_t>(static_cast<double>(emitted) * options_.backend.usage_claim_factor()));
  }
  v1::InferChunk last;
  *last.mutable_usage() = usage;
  last.set_finish_reason(finish_reason);
  return last;
}

}  // namespace loom
