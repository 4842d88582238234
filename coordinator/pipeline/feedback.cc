// File: coordinator/pipeline/feedback.cc
#include "coordinator/pipeline/feedback.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/categories.h"
#include "common/ids.h"

namespace loom {

absl::StatusOr<v1::FeedbackResponse> ApplyFeedback(LedgerStore* ledger, OutcomeModel* outcomes,
                                                   const std::string& client_id,
                                                   const v1::FeedbackRequest& request) {
  constexpr size_t kMaxId = 256;
  if (request.request_id().empty() || request.request_id().size() > kMaxId) {
    return absl::InvalidArgumentError(
        absl::StrCat("feedback needs the request_id the answer was given (1 to ", kMaxId,
                     " bytes)"));
  }
  if (request.sub_task_id().size() > kMaxId) {
    return absl::InvalidArgumentError("feedback: sub_task_id is too long");
  }
  if (request.rating() != v1::FEEDBACK_RATING_GOOD && request.rating() != v1::FEEDBACK_RATING_BAD) {
    return absl::InvalidArgumentError("feedback needs a rating: \"good\" or \"bad\"");
  }
  const std::string account = ClientAccount(client_id);
  FeedbackVerdict verdict{ScopedRequestId(account, request.request_id()), account,
                          request.rating() == v1::FEEDBACK_RATING_GOOD, request.sub_task_id()};
  // The client's own id first (the ledger keeps it scoped), then an id the coordinator gave.
  absl::StatusOr<std::vector<OutcomeDelta>> applied = ledger->RecordFeedback(verdict);
  if (absl::IsNotFound(applied.status())) {
    verdict.request_id = request.request_id();
    applied = ledger->RecordFeedback(verdict);
    if (absl::IsNotFound(applied.status())) {
      // Named as the client knows it, not in the ledger's scoped form.
      return absl::NotFoundError(absl::StrCat("no settled request ", request.request_id(),
                                              " of client ", client_id));
    }
  }
  if (!applied.ok()) return applied.status();
  if (outcomes) outcomes->Apply(*applied);
  v1::FeedbackResponse response;
  response.set_request_id(request.request_id());
  for (const OutcomeDelta& d : *applied) {
    v1::OutcomeChange* c = response.add_applied();
    c->set_model(d.model);
    c->set_category(d.category);
    c->set_good(d.good);
    c->set_bad(d.bad);
  }
  return response;
}

v1::ListAffinitiesResponse AffinityReport(const ModelSelector& selector,
                                          const std::vector<v1::DeviceInfo>& devices,
                                          const OutcomeModel* outcomes) {
  std::map<std::string, v1::ModelInfo> models;  // by name: the first advertisement seen
  for (const v1::DeviceInfo& d : devices) {
    for (const v1::ModelInfo& m : d.models()) models.emplace(m.name(), m);
  }
  if (outcomes) {
    for (const auto& [key, counts] : outcomes->Counts()) {
      v1::ModelInfo m;
      m.set_name(key.first);
      models.emplace(key.first, m);  // not advertised now: the table's unknown-family prior
    }
  }
  v1::ListAffinitiesResponse out;
  for (const auto& [name, model] : models) {
    for (v1::TaskCategory c : kAllCategories) {
      double prior = 0, good = 0, bad = 0;
      const double blended = selector.AffinityOf(model, c, &prior, &good, &bad);
      v1::Affinity* a = out.add_affinities();
      a->set_model(name);
      a->set_family(model.family());
      a->set_category(c);
      a->set_prior(prior);
      a->set_good(good);
      a->set_bad(bad);
      a->set_blended(blended);
    }
  }
  return out;
}

}  // namespace loom
