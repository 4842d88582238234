#include "coordinator/pipeline/task_decomposer.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/categories.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "coordinator/mesh/policy.h"
#include "nlohmann/json.hpp"

namespace loom {
namespace {

using json = nlohmann::json;

constexpr char kSynthesisPrompt[] =
    "Combine the results of the parts below into one coherent answer to the original request. "
    "Follow the order of the request, keep every part's substance and any code blocks intact, "
    "remove repetition, and do not mention that the work was split into parts.";

absl::Status Invalid(const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("decomposer output rejected: ", why));
}

}  // namespace

std::string SubTaskLabel(const v1::SubTask& task) {
  const absl::string_view first_line = absl::string_view(task.prompt()).substr(0, task.prompt().find('\n'));
  return absl::StrCat(CategoryName(task.category()), ": ",
                      first_line.size() > 60 ? TruncateUtf8(first_line, 57, "...") : first_line);
}

TaskDecomposer::TaskDecomposer(DecomposerOptions options, const AttemptRunner* runner)
    : options_(std::move(options)), runner_(runner) {}

Decomposition TaskDecomposer::FromRules(const Analysis& analysis, int64_t sub_task_tokens) {
  Decomposition d;
  d.method = "rules";
  d.synthesis_prompt = kSynthesisPrompt;
  for (size_t i = 0; i < analysis.asks.size(); ++i) {
    const Ask& ask = analysis.asks[i];
    v1::SubTask task;
    task.set_id(NewUuid());
    std::string prompt = ask.text;
    if (!analysis.context.empty()) {
      absl::StrAppend(&prompt, "\n\nMaterial from the request:\n", analysis.context);
    }
    task.set_prompt(prompt);
    task.set_category(ask.category);
    task.set_estimated_tokens(sub_task_tokens);
    if (i > 0 && (ask.refers_back || ask.sequential)) {
      const std::string lower = absl::AsciiStrToLower(ask.text);
      const bool all_before = absl::StrContains(lower, "the two") ||
                              absl::StrContains(lower, "both") || absl::StrContains(lower, "all ");
      for (size_t j = all_before ? 0 : i - 1; j < i; ++j) {
        task.add_depends_on(d.sub_tasks[j].id());
      }
    }
    int order = 0;
    for (const auto& dep : task.depends_on()) {
      for (const auto& prior : d.sub_tasks) {
        if (prior.id() == dep) order = std::max(order, prior.order_index() + 1);
      }
    }
    task.set_order_index(order);
    d.sub_tasks.push_back(std::move(task));
  }
  MarkPrivateData(analysis, &d);
  return d;
}

void TaskDecomposer::MarkPrivateData(const Analysis& analysis, Decomposition* d) {
  // A prefix of the pasted material that a sub-task's prompt quotes shows it carries it.
  const std::string quoted = analysis.context.substr(0, 64);
  std::map<std::string, bool> is_private;
  // Dependencies first: each has a lower order_index than the tasks that receive it.
  std::vector<v1::SubTask*> by_order;
  for (v1::SubTask& task : d->sub_tasks) by_order.push_back(&task);
  std::stable_sort(by_order.begin(), by_order.end(),
                   [](auto* a, auto* b) { return a->order_index() < b->order_index(); });
  for (v1::SubTask* t : by_order) {
    v1::SubTask& task = *t;
    bool p = task.private_data() || CarriesPersonalData(task.prompt()) ||
             (!quoted.empty() && absl::StrContains(task.prompt(), quoted));
    // A dependency's output goes into this prompt: what it saw, this one sees.
    for (const std::string& dep : task.depends_on()) p = p || is_private[dep];
    task.set_private_data(p);
    is_private[task.id()] = p;
  }
}

namespace {

// One entry of "sub_tasks", its id given a UUID (recorded in uuid_of) and its order_index
// recorded; dependencies are linked later, once every id is known.
absl::StatusOr<v1::SubTask> ParseSubTask(const json& t, size_t i, const DecomposerOptions& options,
                                         std::map<std::string, std::string>* uuid_of,
                                         std::map<std::string, int>* order_of) {
  const std::string where = absl::StrCat("sub_tasks[", i, "]");
  if (!t.is_object()) return Invalid(where + " is not an object");
  if (!t.contains("id") || !t["id"].is_string() || t["id"].get<std::string>().empty() ||
      t["id"].get<std::string>().size() > 64) {
    return Invalid(where + ".id must be a non-empty string of at most 64 characters");
  }
  const std::string id = t["id"].get<std::string>();
  if (uuid_of->count(id)) return Invalid(absl::StrCat("duplicate id '", id, "'"));
  if (!t.contains("prompt") || !t["prompt"].is_string() || t["prompt"].get<std::string>().empty()) {
    return Invalid(where + ".prompt must be a non-empty string");
  }
  if (t["prompt"].get<std::string>().size() > options.max_prompt_bytes) {
    return Invalid(where + ".prompt is too long");
  }
  if (!t.contains("category") || !t["category"].is_string()) {
    return Invalid(where + ".category is missing");
  }
  std::optional<v1::TaskCategory> category = ParseCategory(t["category"].get<std::string>());
  if (!category) {
    return Invalid(absl::StrCat(where, ".category '", t["category"].get<std::string>(),
                                "' is not one of the eight categories"));
  }
  if (!t.contains("order_index") || !t["order_index"].is_number_integer() ||
      t["order_index"].get<int64_t>() < 0 || t["order_index"].get<int64_t>() > 64) {
    return Invalid(where + ".order_index must be an integer in [0, 64]");
  }
  v1::SubTask task;
  (*uuid_of)[id] = NewUuid();
  task.set_id((*uuid_of)[id]);
  task.set_prompt(t["prompt"].get<std::string>());
  task.set_category(*category);
  task.set_order_index(static_cast<int32_t>(t["order_index"].get<int64_t>()));
  (*order_of)[id] = task.order_index();
  int64_t estimate = options.sub_task_tokens;
  if (t.contains("estimated_tokens") && t["estimated_tokens"].is_number_integer()) {
    estimate = std::clamp<int64_t>(t["estimated_tokens"].get<int64_t>(), 1,
                                   4 * options.sub_task_tokens);
  }
  task.set_estimated_tokens(estimate);
  if (t.contains("private") && !t["private"].is_null()) {
    if (!t["private"].is_boolean()) return Invalid(where + ".private must be true or false");
    task.set_private_data(t["private"].get<bool>());
  }
  return task;
}

// Each entry's depends_on, by model id, as the dependencies' UUIDs: every id known, and each
// dependency earlier in order_index (so there is no cycle).
absl::Status LinkDependencies(const json& tasks, const std::map<std::string, std::string>& uuid_of,
                              const std::map<std::string, int>& order_of,
                              std::vector<v1::SubTask>* sub_tasks) {
  for (size_t i = 0; i < tasks.size(); ++i) {
    const json& t = tasks[i];
    const std::string id = t["id"].get<std::string>();
    if (!t.contains("depends_on")) continue;
    if (!t["depends_on"].is_array()) {
      return Invalid(absl::StrCat("sub_tasks[", i, "].depends_on is not an array"));
    }
    std::set<std::string> seen;
    for (const json& dep : t["depends_on"]) {
      if (!dep.is_string()) return Invalid("depends_on holds a non-string");
      const std::string dep_id = dep.get<std::string>();
      if (!uuid_of.count(dep_id)) {
        return Invalid(absl::StrCat("'", id, "' depends on unknown id '", dep_id, "'"));
      }
      if (order_of.at(dep_id) >= order_of.at(id)) {
        return Invalid(absl::StrCat("'", id, "' depends on '", dep_id,
                                    "' whose order_index is not lower (a cycle or a misordering)"));
      }
      if (seen.insert(dep_id).second) (*sub_tasks)[i].add_depends_on(uuid_of.at(dep_id));
    }
  }
  return absl::OkStatus();
}

// The longest dependency chain stays within max_depth. Tasks are visited in order_index order:
// every dependency has a lower index, so it comes first.
absl::Status CheckDepth(const std::vector<v1::SubTask>& sub_tasks, int max_depth) {
  std::map<std::string, int> depth;  // UUID -> longest chain ending here
  std::vector<const v1::SubTask*> by_order;
  for (const auto& t : sub_tasks) by_order.push_back(&t);
  std::stable_sort(by_order.begin(), by_order.end(), [](auto* a, auto* b) {
    return a->order_index() < b->order_index();
  });
  for (const v1::SubTask* t : by_order) {
    int deepest = 0;
    for (const auto& dep : t->depends_on()) deepest = std::max(deepest, depth[dep]);
    depth[t->id()] = deepest + 1;
    if (depth[t->id()] > max_depth) {
      return Invalid(absl::StrCat("dependency chain deeper than ", max_depth));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Decomposition> TaskDecomposer::ParseModelOutput(absl::string_view output,
                                                               const DecomposerOptions& options) {
  if (output.size() > options.max_json_bytes) {
    return Invalid(absl::StrCat(output.size(), " bytes, more than the limit of ",
                                options.max_json_bytes));
  }
  // Models often wrap JSON in prose or a code fence: take the outermost object.
  const size_t open = output.find('{');
  const size_t close = output.rfind('}');
  if (open == absl::string_view::npos || close == absl::string_view::npos || close < open) {
    return Invalid("no JSON object in the output");
  }
  json root = json::parse(output.substr(open, close - open + 1), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) return Invalid("malformed JSON");
  if (!root.contains("sub_tasks") || !root["sub_tasks"].is_array()) {
    return Invalid("missing array 'sub_tasks'");
  }
  const json& tasks = root["sub_tasks"];
  if (tasks.empty()) return Invalid("no sub-tasks");
  if (static_cast<int>(tasks.size()) > options.max_sub_tasks) {
    return Invalid(absl::StrCat(tasks.size(), " sub-tasks, more than ", options.max_sub_tasks));
  }
  if (!root.contains("synthesis_prompt") || !root["synthesis_prompt"].is_string() ||
      root["synthesis_prompt"].get<std::string>().empty()) {
    return Invalid("missing 'synthesis_prompt'");
  }
  Decomposition d;
  d.synthesis_prompt = root["synthesis_prompt"].get<std::string>();
  if (d.synthesis_prompt.size() > options.max_prompt_bytes) return Invalid("synthesis_prompt too long");

  std::map<std::string, std::string> uuid_of;  // model id -> UUID
  std::map<std::string, int> order_of;
  for (size_t i = 0; i < tasks.size(); ++i) {
    absl::StatusOr<v1::SubTask> task = ParseSubTask(tasks[i], i, options, &uuid_of, &order_of);
    if (!task.ok()) return task.status();
    d.sub_tasks.push_back(*std::move(task));
  }
  LOOM_RETURN_IF_ERROR(LinkDependencies(tasks, uuid_of, order_of, &d.sub_tasks));
  LOOM_RETURN_IF_ERROR(CheckDepth(d.sub_tasks, options.max_depth));
  return d;
}

std::string TaskDecomposer::ModelPrompt(const std::string& request_text, int max_sub_tasks) {
  return absl::StrCat(
      "Split the request below into at most ", max_sub_tasks,
      " sub-tasks that different models can work on. Reply with JSON only, no prose:\n"
      "{\"sub_tasks\": [{\"id\": \"A\", \"prompt\": \"...\", \"category\": \"code\", "
      "\"order_index\": 0, \"depends_on\": [], \"estimated_tokens\": 300, \"private\": false}], "
      "\"synthesis_prompt\": \"how to combine the parts\"}\n"
      "category is one of: code (write, debug, translate between programming languages, or "
      "review code), reasoning, creative, factual, summarization, translation (between natural "
      "languages), structured, general. Sub-tasks with the same order_index may run in "
      "parallel; a sub-task may depend only on sub-tasks with a lower order_index, and receives "
      "their outputs. Each prompt must stand alone. Set private to true for a sub-task whose "
      "prompt carries the requester's own text, code, documents or personal data.\n\nRequest:\n",
      request_text);
}

absl::StatusOr<std::string> TaskDecomposer::ChooseModel() const {
  return SmallestUsableModel(*runner_->registry(), options_.model,
                             /*allow_simulated=*/options_.mode == DecomposerOptions::Mode::kModel,
                             "decomposer");
}

Decomposition TaskDecomposer::Decompose(const RequestScope& scope, const Analysis& analysis,
                                        const std::string& request_text) const {
  if (options_.mode == DecomposerOptions::Mode::kRules || runner_ == nullptr) {
    return FromRules(analysis, options_.sub_task_tokens);
  }
  absl::StatusOr<std::string> model = ChooseModel();
  if (!model.ok()) {
    Decomposition d = FromRules(analysis, options_.sub_task_tokens);
    d.note = absl::StrCat(model.status().message(), "; used the rule-based decomposer");
    return d;
  }
  CallSpec spec;
  spec.sub_task_id = "decompose";
  spec.role = v1::CONTRIBUTION_ROLE_DECOMPOSE;
  spec.pinned.model = *model;
  spec.max_tokens = 1024;
  spec.max_attempts = 2;
  spec.stream = false;
  v1::ChatMessage m;
  m.set_role("user");
  m.set_content(ModelPrompt(request_text, options_.max_sub_tasks));
  spec.messages.push_back(m);
  absl::StatusOr<CallResult> call = runner_->Run(
      scope.request_id, spec, std::min(scope.deadline, scope.clock->Now() + options_.timeout), scope.cancel,
      scope.emit, scope.log);
  if (!call.ok()) {
    Decomposition d = FromRules(analysis, options_.sub_task_tokens);
    d.note = absl::StrCat("decomposer model ", *model, " failed (", call.status().ToString(),
                          "); used the rule-based decomposer");
    return d;
  }
  absl::StatusOr<Decomposition> parsed = ParseModelOutput(call->output, options_);
  if (!parsed.ok()) {
    Decomposition d = FromRules(analysis, options_.sub_task_tokens);
    d.note = absl::StrCat("model ", *model, ": ", parsed.status().message(),
                          "; used the rule-based decomposer");
    return d;
  }
  MarkPrivateData(analysis, &*parsed);
  parsed->method = absl::StrCat("model:", *model);
  parsed->model_call = *std::move(call);
  return *std::move(parsed);
}

}  // namespace loom
