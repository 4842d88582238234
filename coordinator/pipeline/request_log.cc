// File: coordinator/pipeline/request_log.cc
#include "coordinator/pipeline/request_log.h"

#include <algorithm>

#include "common/utf8.h"

namespace loom {
namespace {

std::string LastUserText(const v1::CompleteRequest& request) {
  for (int i = request.messages_size() - 1; i >= 0; --i) {
    if (request.messages(i).role() == "user") return request.messages(i).content();
  }
  return request.messages_size() > 0 ? request.messages(request.messages_size() - 1).content() : "";
}

// The response as the log keeps it: texts cut to previews.
void Trim(v1::CompleteResponse* r) {
  r->set_output(TruncateUtf8(r->output(), RequestLog::kOutputPreviewBytes, "…"));
  for (v1::SubTask& t : *r->mutable_plan()->mutable_sub_tasks()) {
    t.set_prompt(TruncateUtf8(t.prompt(), RequestLog::kPromptPreviewBytes, "…"));
  }
  r->mutable_plan()->set_synthesis_prompt(
      TruncateUtf8(r->plan().synthesis_prompt(), RequestLog::kPromptPreviewBytes, "…"));
  for (v1::SubTaskResult& s : *r->mutable_results()) {
    s.set_output(TruncateUtf8(s.output(), RequestLog::kPromptPreviewBytes, "…"));
    s.set_input(TruncateUtf8(s.input(), RequestLog::kPromptPreviewBytes, "…"));
  }
  if (r->has_compete()) {
    for (v1::CompeteCandidate& c : *r->mutable_compete()->mutable_candidates()) {
      c.set_output(TruncateUtf8(c.output(), RequestLog::kPromptPreviewBytes, "…"));
    }
  }
  for (v1::Choice& c : *r->mutable_choices()) {
    c.set_output(TruncateUtf8(c.output(), RequestLog::kOutputPreviewBytes, "…"));
    c.clear_logprobs_json();
  }
  r->clear_logprobs_json();
}

}  // namespace

RequestLog::RequestLog(size_t capacity, Clock* clock)
    : capacity_(std::max<size_t>(1, capacity)), clock_(clock ? clock : Clock::Real()) {}

RequestLog::Entry* RequestLog::Find(const std::string& id) {
  for (Entry& e : entries_) {
    if (e.id == id) return &e;
  }
  return nullptr;
}

void RequestLog::Begin(const std::string& id, const std::string& display_id,
                       const std::string& client, const v1::CompleteRequest& request) {
  Entry e;
  e.id = id;
  e.display_id = display_id;
  e.client = client;
  e.model = request.model();
  e.prompt = TruncateUtf8(LastUserText(request), kPromptPreviewBytes, "…");
  e.started = clock_->Now();
  e.finished = absl::InfinitePast();
  absl::MutexLock lock(&mu_);
  entries_.push_front(std::move(e));
  while (entries_.size() > capacity_) entries_.pop_back();
}

void RequestLog::Plan(const std::string& id, const v1::CompilationPlan& plan) {
  absl::MutexLock lock(&mu_);
  Entry* e = Find(id);
  if (e == nullptr || !e->running) return;
  *e->response.mutable_plan() = plan;
  Trim(&e->response);
}

void RequestLog::Attempt(const std::string& id, const v1::Attempt& attempt) {
  absl::MutexLock lock(&mu_);
  Entry* e = Find(id);
  if (e == nullptr || !e->running) return;
  *e->response.add_attempts() = attempt;
}

void RequestLog::Event(const std::string& id, const v1::CompleteEvent& event) {
  if (!event.has_plan() && !event.has_sub_task()) return;
  absl::MutexLock lock(&mu_);
  Entry* e = Find(id);
  if (e == nullptr || !e->running) return;
  if (event.has_plan()) {
    *e->response.mutable_plan() = event.plan();
    Trim(&e->response);
  } else {
    e->events.push_back(event.sub_task());
  }
}

void RequestLog::End(const std::string& id, const absl::StatusOr<v1::CompleteResponse>& result) {
  absl::MutexLock lock(&mu_);
  Entry* e = Find(id);
  if (e == nullptr) return;
  e->running = false;
  e->finished = clock_->Now();
  if (result.ok()) {
    e->response = *result;
    Trim(&e->response);
  } else {
    e->error = result.status().ToString();
  }
}

std::vector<RequestLog::Entry> RequestLog::List(const std::string& client, size_t limit) const {
  std::vector<Entry> out;
  absl::MutexLock lock(&mu_);
  for (const Entry& e : entries_) {
    if (out.size() >= limit) break;
    if (client.empty() || e.client == client) out.push_back(e);
  }
  return out;
}

std::optional<RequestLog::Entry> RequestLog::Get(const std::string& id,
                                                 const std::string& client) const {
  absl::MutexLock lock(&mu_);
  for (const Entry& e : entries_) {
    if (e.id == id && (client.empty() || e.client == client)) return e;
  }
  return std::nullopt;
}

}  // namespace loom
