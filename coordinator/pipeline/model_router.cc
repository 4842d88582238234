// File: coordinator/pipeline/model_router.cc
#include "coordinator/pipeline/model_router.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/categories.h"
#include "coordinator/analyzer/text_features.h"
#include "nlohmann/json.hpp"

namespace loom {
namespace {

using json = nlohmann::json;
constexpr size_t kMaxReplyBytes = 4096;
constexpr size_t kMaxPromptTextBytes = 4000;  // of the request, in the router prompt

}  // namespace

ModelRouter::ModelRouter(RouterOptions options, const AttemptRunner* runner)
    : options_(std::move(options)), runner_(runner) {}

bool ModelRouter::ShouldConsult(const Analysis& analysis, const v1::CompleteRequest& request) const {
  if (!options_.enabled || runner_ == nullptr) return false;
  if (request.mode() != v1::PLAN_KIND_UNSPECIFIED || !request.model().empty() ||
      !request.family().empty()) {
    return false;
  }
  if (analysis.asks.size() != 1 || analysis.kind == v1::PLAN_KIND_COMPILED) return false;
  // The router's prompt shows one request; a follow-up was already read with its conversation,
  // an ask under a task-setting system message with that task.
  if (analysis.follow_up || analysis.system_task) return false;
  const CategoryProbs& p = analysis.asks.front().probs;
  return p.best_p() > 0 && p.best_p() < options_.consult_below;
}

std::string ModelRouter::Prompt(const std::string& text) {
  // The request is cut (on a code point) so the prompt stays small whatever was pasted.
  std::string shown = ReadWindow(text);
  if (shown.size() > kMaxPromptTextBytes) {
    size_t cut = kMaxPromptTextBytes;
    while (cut > 0 && (static_cast<unsigned char>(shown[cut]) & 0xC0) == 0x80) --cut;
    shown.resize(cut);
  }
  return absl::StrCat(
      "Classify the user request below for routing. Reply with JSON only, no prose:\n"
      "{\"category\": \"...\", \"multi_part\": false}\n"
      "category is one of: code (write, debug, review or translate code), reasoning (math, logic, "
      "analysis), creative (stories, poems, brainstorming), factual (knowledge questions), "
      "summarization (condense a text), translation (between natural languages), structured "
      "(JSON, tables, extraction), general (anything else). multi_part is true when the request "
      "asks for two or more separate results that different specialists could produce.\n\n"
      "Request:\n<<<\n", shown, "\n>>>");
}

absl::StatusOr<RouterVerdict> ModelRouter::ParseReply(absl::string_view reply) {
  if (reply.size() > kMaxReplyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("a reply of ", reply.size(), " bytes, more than ",
                                                   kMaxReplyBytes));
  }
  // The first object: models wrap JSON in prose or a code fence.
  const size_t open = reply.find('{');
  const size_t close = open == absl::string_view::npos ? open : reply.find('}', open);
  if (open == absl::string_view::npos || close == absl::string_view::npos) {
    return absl::InvalidArgumentError("no JSON object in the reply");
  }
  json root = json::parse(reply.substr(open, close - open + 1), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError("malformed JSON in the reply");
  }
  if (!root.contains("category") || !root["category"].is_string()) {
    return absl::InvalidArgumentError("no \"category\" string in the reply");
  }
  const std::string name = root["category"].get<std::string>();
  std::optional<v1::TaskCategory> category =
      ParseCategory(absl::StripAsciiWhitespace(name));
  if (!category) {
    return absl::InvalidArgumentError(
        absl::StrCat("category \"", name.substr(0, 40), "\" is not one of the eight"));
  }
  RouterVerdict v;
  v.category = *category;
  if (root.contains("multi_part")) {
    if (!root["multi_part"].is_boolean()) {
      return absl::InvalidArgumentError("\"multi_part\" is not a boolean");
    }
    v.multi_part = root["multi_part"].get<bool>();
  }
  return v;
}

void ModelRouter::Apply(const RouterVerdict& verdict, bool may_compile, Analysis* a) {
  if (!a->asks.empty()) a->asks.front().category = verdict.category;
  // The router's category first; the classifier's others keep their order behind it.
  auto it = std::find_if(a->categories.begin(), a->categories.end(),
                         [&](const v1::CategoryScore& c) { return c.category() == verdict.category; });
  v1::CategoryScore first;
  first.set_category(verdict.category);
  first.set_score(it == a->categories.end() ? 0 : it->score());
  if (it != a->categories.end()) a->categories.erase(it);
  a->categories.insert(a->categories.begin(), first);
  if (verdict.multi_part && may_compile && a->kind == v1::PLAN_KIND_PASSTHROUGH) {
    a->kind = v1::PLAN_KIND_COMPILED;
  }
  // A verdict is a clear answer: no compete between categories the router has settled.
  if (a->kind == v1::PLAN_KIND_COMPETE) a->kind = v1::PLAN_KIND_PASSTHROUGH;
}

RouterResult ModelRouter::Consult(const RequestScope& scope, const std::string& text) const {
  RouterResult out;
  const uint64_t key = Fnv1a64(text);
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.verdict = it->second;
      out.note = absl::StrFormat("router (cached): %s%s", CategoryName(it->second.category),
                                 it->second.multi_part ? ", several asks" : "");
      return out;
    }
  }
  absl::StatusOr<std::string> model = SmallestUsableModel(
      *runner_->registry(), options_.model, /*allow_simulated=*/!options_.model.empty(), "router");
  if (!model.ok()) {
    out.note = absl::StrCat("router not asked: ", model.status().message(),
                            "; the classifier's verdict stands");
    return out;
  }
  CallSpec spec;
  spec.sub_task_id = "route";
  spec.role = v1::CONTRIBUTION_ROLE_ROUTE;
  spec.pinned.model = *model;
  spec.max_tokens = options_.max_tokens;
  spec.max_attempts = 1;  // a second try would miss the deadline anyway
  spec.stream = false;
  v1::ChatMessage m;
  m.set_role("user");
  m.set_content(Prompt(text));
  spec.messages.push_back(m);
  absl::StatusOr<CallResult> call =
      runner_->Run(scope.request_id, spec, std::min(scope.deadline, scope.clock->Now() + options_.timeout),
                   scope.cancel, EventSink(), scope.log);
  if (!call.ok()) {
    out.note = absl::StrCat("router model ", *model, " failed (", call.status().ToString(),
                            "); the classifier's verdict stands");
    return out;
  }
  absl::StatusOr<RouterVerdict> verdict = ParseReply(call->output);
  if (!verdict.ok()) {
    out.note = absl::StrCat("router model ", *model, ": reply rejected (",
                            verdict.status().message(), "); the classifier's verdict stands");
    return out;
  }
  {
    absl::MutexLock lock(&mu_);
    if (cache_.size() >= options_.cache_entries) cache_.clear();
    cache_[key] = *verdict;
  }
  out.verdict = *verdict;
  out.note = absl::StrFormat("router model %s: %s%s", *model, CategoryName(verdict->category),
                             verdict->multi_part ? ", several asks" : "");
  out.call = *std::move(call);
  return out;
}

}  // namespace loom
