// File: common/tokens.h
// The one token counter of Loom. Real tokenizers differ per model; Loom needs a count that is
// the same on every process, cheap, and never smaller than the word count, for estimates,
// budgets and for checking what workers claim. Calibrated per script against published
// tokenizer statistics (common/tokens.cc): a Latin word is a token per 8 letters, a CJK
// character 1.25 tokens, a Hangul syllable 1, other alphabets a token per 3 letters, an emoji
// 2, any other non-space character 1.
#ifndef LOOM_COMMON_TOKENS_H_
#define LOOM_COMMON_TOKENS_H_

#include <cstdint>
#include <string_view>

namespace loom {

int64_t CountTokens(std::string_view text);

}  // namespace loom

#endif  // LOOM_COMMON_TOKENS_H_
