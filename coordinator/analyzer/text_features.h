// File: coordinator/analyzer/text_features.h
// Turns a prompt into the sparse features the category classifier reads: hashed word unigrams
// and bigrams, character 4-grams of words (typos, inflections), the first words (where the
// instruction usually is), and shape features (length, lines, code symbols, digits, scripts).
// Chinese and Japanese text has no spaces, so each ideograph or kana is a token of its own and
// the bigrams are character bigrams.
//
// The same function is used to train the model (coordinator/analyzer/train_main.cc) and to score
// requests, so the two can never disagree; a change here that alters any feature must bump
// kFeatureVersion, and a model trained on another version is refused when it loads.
//
// Cost is bounded: only the first kHeadBytes and the last kTailBytes of a long prompt are read
// (a pasted document's instruction is at its start or end), the tail reaching back to the start
// of the last line when that line is short enough (a closing "Summarize the above, ..." is read
// whole). Thread-safe (pure functions).
//
//   std::vector<uint32_t> ids;
//   ExtractFeatures("Translate this to French: good morning", 17, &ids);
#ifndef LOOM_COORDINATOR_ANALYZER_TEXT_FEATURES_H_
#define LOOM_COORDINATOR_ANALYZER_TEXT_FEATURES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace loom {

inline constexpr uint32_t kFeatureVersion = 2;
// The window, chosen by measurement (README, "The analyzer's accuracy"): 384+128 read as well as
// 1024+256 on prompts from outside the project and decide in a third of the time.
inline constexpr size_t kHeadBytes = 384;
inline constexpr size_t kTailBytes = 128;
inline constexpr size_t kTailLineBytes = 256;  // how far back the tail reaches for the last line

// Appends to `ids` (cleared first) the distinct feature buckets of `text`, each in
// [0, 2^hash_bits), in first-seen order. Every feature has the same value, 1/sqrt(ids->size()).
void ExtractFeatures(absl::string_view text, int hash_bits, std::vector<uint32_t>* ids);

// What a long prompt is read as: its first kHeadBytes and its tail (TailStart) joined by a
// newline, cut on code-point boundaries; a prompt of at most kHeadBytes + kTailBytes whole.
std::string ReadWindow(absl::string_view text);

// Where the tail of a long `text` begins: kTailBytes before its end, or the start of its last
// line when that line (trailing whitespace aside) begins within the last kTailLineBytes; on a
// code-point boundary.
size_t TailStart(absl::string_view text);

// 64-bit FNV-1a, the hash behind the buckets (and the model file's checksum).
uint64_t Fnv1a64(absl::string_view bytes, uint64_t seed = 0xcbf29ce484222325ULL);

}  // namespace loom

#endif  // LOOM_COORDINATOR_ANALYZER_TEXT_FEATURES_H_
