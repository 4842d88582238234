// Fuzzes config parsing: JSON into a WorkerConfig and its validation, and into an
// AffinityConfig applied to the affinity table. Errors name the origin; a valid worker config
// has ids that can appear in certificates and join tokens.
#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "common/json_config.h"
#include "common/tls.h"
#include "coordinator/mesh/model_selector.h"
#include "fuzz/fuzz_check.h"
#include "worker/worker_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string json(reinterpret_cast<const char*>(data), size);
  loom::v1::WorkerConfig worker;
  absl::Status parsed = loom::ParseJsonConfig(json, "fuzz.json", &worker);
  if (!parsed.ok()) {
    FUZZ_CHECK(absl::StrContains(parsed.message(), "fuzz.json"));
  } else {
    absl::StatusOr<loom::v1::WorkerConfig> valid = loom::ValidateWorkerConfig(worker, "fuzz.json");
    if (valid.ok()) {
      FUZZ_CHECK(loom::IsValidId(valid->device_id()));
      FUZZ_CHECK(loom::IsValidId(valid->provider_id()));
      FUZZ_CHECK(valid->max_concurrency() > 0);
      FUZZ_CHECK(valid->models_size() > 0);
    } else {
      FUZZ_CHECK(absl::StrContains(valid.status().message(), "fuzz.json"));
    }
  }
  loom::v1::AffinityConfig affinity;
  if (loom::ParseJsonConfig(json, "affinity.json", &affinity).ok()) {
    loom::AffinityTable table = loom::AffinityTable::Defaults();
    (void)table.Apply(affinity);
  }
  return 0;
}
