// Fuzzes the validator of the decomposer model's JSON: whatever a model returns, an accepted
// graph respects every bound (count, prompt size, categories, dependencies on earlier steps,
// depth), and a refusal is INVALID_ARGUMENT.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "coordinator/pipeline/task_decomposer.h"
#include "fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string output(reinterpret_cast<const char*>(data), size);
  const loom::DecomposerOptions options;
  absl::StatusOr<loom::Decomposition> d = loom::TaskDecomposer::ParseModelOutput(output, options);
  if (!d.ok()) {
    FUZZ_CHECK(d.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  FUZZ_CHECK(!d->sub_tasks.empty());
  FUZZ_CHECK(static_cast<int>(d->sub_tasks.size()) <= options.max_sub_tasks);
  std::map<std::string, const loom::v1::SubTask*> by_id;
  for (const auto& t : d->sub_tasks) {
    FUZZ_CHECK(!t.prompt().empty());
    FUZZ_CHECK(t.prompt().size() <= options.max_prompt_bytes);
    FUZZ_CHECK(t.category() != loom::v1::TASK_CATEGORY_UNSPECIFIED);
    FUZZ_CHECK(by_id.emplace(t.id(), &t).second);  // ids unique
  }
  for (const auto& t : d->sub_tasks) {
    for (const auto& dep : t.depends_on()) {
      auto it = by_id.find(dep);
      FUZZ_CHECK(it != by_id.end());
      FUZZ_CHECK(it->second->order_index() < t.order_index());
    }
  }
  // The longest dependency chain, computed independently of the validator.
  std::map<std::string, int> depth;
  std::function<int(const std::string&)> chain = [&](const std::string& id) {
    auto known = depth.find(id);
    if (known != depth.end()) return known->second;
    int deepest = 0;
    for (const auto& dep : by_id[id]->depends_on()) deepest = std::max(deepest, chain(dep));
    return depth[id] = deepest + 1;
  };
  for (const auto& t : d->sub_tasks) FUZZ_CHECK(chain(t.id()) <= options.max_depth);
  return 0;
}
