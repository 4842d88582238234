// Fuzzes loom-ledger's argument parsing: credit amounts (exact decimals, never floating point),
// times, output formats and per-command help. An accepted amount prints back to the same
// number of micro-credits.
#include <cstdint>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "fuzz/fuzz_check.h"
#include "ledger/ledger_cli.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<int64_t> credits = loom::ParseCredits(text);
  if (credits.ok()) {
    FUZZ_CHECK(*credits > 0);
    const std::string printed =
        absl::StrFormat("%d.%06d", *credits / 1'000'000, *credits % 1'000'000);
    absl::StatusOr<int64_t> again = loom::ParseCredits(printed);
    FUZZ_CHECK(again.ok() && *again == *credits);
  } else {
    FUZZ_CHECK(credits.status().code() == absl::StatusCode::kInvalidArgument);
  }
  absl::StatusOr<int64_t> time = loom::ParseTimeMs(text);
  if (!time.ok()) FUZZ_CHECK(time.status().code() == absl::StatusCode::kInvalidArgument);
  (void)loom::ParseOutputFormat(text);
  (void)loom::CommandHelp(text);
  return 0;
}
