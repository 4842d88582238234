// File: common/tokens.h
// The one token counter of Loom. Real tokenizers differ per model; Loom needs a count that is
// the same on every process, cheap, and never smaller than the word count, for estimates,
// budgets and for checking what workers claim. A token here is a run of letters/digits (split
// every 8 characters, as BPE splits long words) or one other non-space character.
#ifndef LOOM_COMMON_TOKENS_H_
#define LOOM_COMMON_TOKENS_H_

#include <cstdint>
#include <string_view>

namespace loom {

int64_t CountTokens(std::string_view text);

}  // namespace loom

#endif  // LOOM_COMMON_TOKENS_H_
