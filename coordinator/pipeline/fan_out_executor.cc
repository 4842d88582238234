#include "coordinator/pipeline/fan_out_executor.h"

#include <map>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "coordinator/pipeline/task_decomposer.h"

namespace loom {

std::string FanOutExecutor::BuildInput(const v1::SubTask& task,
                                       const std::vector<const SubTaskOutcome*>& dependencies) {
  std::string input = task.prompt();
  if (dependencies.empty()) return input;
  absl::StrAppend(&input, "\n\nResults of the earlier steps this builds on:");
  for (const SubTaskOutcome* dep : dependencies) {
    absl::StrAppend(&input, "\n\n[", SubTaskLabel(dep->task), "]\n", dep->result.output);
  }
  return input;
}

// Long on purpose: the scheduler's state (done, started, running, failure) lives in this frame
// under one mutex shared with the sub-task threads, and the loop that starts ready sub-tasks
// and waits for one to finish reads best beside it.
absl::StatusOr<std::vector<SubTaskOutcome>> FanOutExecutor::Run(
    const RequestScope& scope, const std::vector<v1::SubTask>& tasks,
    const std::vector<v1::ChatMessage>& context, const v1::Sampling& sampling) const {
  v1::Sampling part_sampling = sampling;
  part_sampling.clear_stop();
  // Sub-tasks stop together when the request is cancelled or one of them finally fails.
  Cancellation stop;
  const int parent_id = scope.cancel ? scope.cancel->OnCancel([&stop] { stop.Cancel(); }) : -1;

  // Sub-tasks on other threads end by updating the state below under `mu`, and this call
  // returns once none is running; the mutex itself lives as long as any of those threads
  // still holds it (it is shared with them), so they may unlock it after this call returned.
  const auto shared_mu = std::make_shared<absl::Mutex>();
  absl::Mutex& mu = *shared_mu;
  std::vector<std::optional<SubTaskOutcome>> done(tasks.size());
  std::vector<bool> started(tasks.size(), false);
  int running = 0;
  absl::Status failure;
  std::map<std::string, size_t> index_of;
  for (size_t i = 0; i < tasks.size(); ++i) index_of[tasks[i].id()] = i;

  auto ready = [&](size_t i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    for (const auto& dep : tasks[i].depends_on()) {
      auto it = index_of.find(dep);
      if (it == index_of.end() || !done[it->second]) return false;
    }
    return true;
  };

  // Runs sub-task i with `input`; called without `mu` held.
  auto run_task = [&](size_t i, const std::string& input) {
    CallSpec spec;
    spec.sub_task_id = tasks[i].id();
    spec.role = v1::CONTRIBUTION_ROLE_EXECUTE;
    spec.categories = {tasks[i].category()};
    spec.private_data = tasks[i].private_data();
    spec.max_tokens = tasks[i].estimated_tokens();
    spec.sampling = part_sampling;
    spec.messages = context;
    v1::ChatMessage user;
    user.set_role("user");
    user.set_content(input);
    spec.messages.push_back(user);
    absl::StatusOr<CallResult> result = runner_->Run(scope.request_id, spec, scope.deadline, &stop, scope.emit, scope.log);
    absl::MutexLock lock(&mu);
    --running;
    if (result.ok()) {
      done[i] = SubTaskOutcome{tasks[i], input, *std::move(result)};
    } else if (failure.ok()) {
      failure = absl::Status(result.status().code(),
                             absl::StrCat("sub-task ", tasks[i].id(), " (", SubTaskLabel(tasks[i]),
                                          ") failed: ", result.status().message()));
      stop.Cancel();
    }
  };

  {
    absl::MutexLock lock(&mu);
    size_t unstarted = tasks.size();
    while (true) {
      std::vector<std::pair<size_t, std::string>> starting;
      if (failure.ok()) {
        for (size_t i = 0; i < tasks.size(); ++i) {
          if (started[i] || !ready(i)) continue;
          started[i] = true;
          --unstarted;
          ++running;
          std::vector<const SubTaskOutcome*> deps;
          for (const auto& dep : tasks[i].depends_on()) deps.push_back(&*done[index_of[dep]]);
          starting.emplace_back(i, BuildInput(tasks[i], deps));
        }
      }
      // The last sub-task started runs on this thread, saving a thread, when nothing can
      // become ready while it runs: no sub-task is left to start, or it is the only one
      // running (sub-tasks become ready only when a running one finishes).
      std::optional<std::pair<size_t, std::string>> inline_task;
      if (!starting.empty() && (unstarted == 0 || running == 1)) {
        inline_task = std::move(starting.back());
        starting.pop_back();
      }
      for (auto& [i, input] : starting) {
        threads_.Run([shared_mu, &run_task, i = i, input = std::move(input)] {
          run_task(i, input);  // touches nothing of this call after its last unlock
        });
      }
      if (inline_task) {
        mu.Unlock();
        run_task(inline_task->first, inline_task->second);
        mu.Lock();
        continue;  // its dependents may be ready now
      }
      if (running == 0) break;
      // Wait for a sub-task to finish (each attempt is bounded by its deadline).
      std::pair<int*, int> state(&running, running);
      mu.Await(absl::Condition(
          +[](std::pair<int*, int>* s) { return *s->first != s->second; }, &state));
    }
  }
  if (scope.cancel && parent_id >= 0) scope.cancel->RemoveCallback(parent_id);

  if (!failure.ok()) return failure;
  std::vector<SubTaskOutcome> out;
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (!done[i]) {
      return absl::InternalError(absl::StrCat("sub-task ", tasks[i].id(),
                                              " never became ready (a dependency is missing)"));
    }
    out.push_back(*std::move(done[i]));
  }
  return out;
}

}  // namespace loom
