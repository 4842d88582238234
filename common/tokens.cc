#include "common/tokens.h"

#include <array>
#include <cstdint>

namespace loom {
namespace {

// How text of each script turns into tokens, calibrated against published tokenizer
// statistics for the model families Loom serves (Llama 3, Qwen 2.5, Mistral, GPT-4's
// cl100k and o200k), so that an honest device's usage report is not far above Loom's count:
//   - Latin letters and digits (accents included): a word is one token per 8 characters, as
//     BPE splits long words (English runs 4-5 characters per token, words stay whole).
//   - CJK ideographs and Japanese kana: 1.25 tokens per character (published: 0.7 for Qwen,
//     1.0-1.2 for Llama 3, 1.2-1.5 for cl100k); Hangul syllables 1 each.
//   - Other alphabets (Cyrillic, Greek, Arabic, Hebrew, Indic, Thai, ...): one token per 3
//     letters (published: 2.5-4 characters per token).
//   - Emoji and other symbols: 2 tokens each; any other non-space character: 1.
enum class Kind { kSpace, kLatin, kCjk, kHangul, kAlphabet, kSymbol, kOther };

constexpr Kind KindOf(uint32_t c) {
  if (c == ' ' || c == '\n' || c == '\t' || c == '\r') return Kind::kSpace;
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
    return Kind::kLatin;
  }
  if (c < 0x80) return Kind::kOther;
  if (c >= 0xC0 && c <= 0x24F && c != 0xD7 && c != 0xF7) return Kind::kLatin;  // Latin-1, Extended-A/B
  if (c >= 0x1E00 && c <= 0x1EFF) return Kind::kLatin;                          // Latin Extended Additional
  if ((c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0xF900 && c <= 0xFAFF) ||
      (c >= 0x20000 && c <= 0x2FFFF) || (c >= 0x3040 && c <= 0x30FF)) {
    return Kind::kCjk;
  }
  if (c >= 0xAC00 && c <= 0xD7AF) return Kind::kHangul;
  if ((c >= 0x370 && c <= 0x1DFF) || (c >= 0x0E00 && c <= 0x0E7F)) return Kind::kAlphabet;
  if ((c >= 0x2190 && c <= 0x2BFF) || (c >= 0x1F000 && c <= 0x1FAFF)) return Kind::kSymbol;
  return Kind::kOther;  // punctuation (CJK's too), marks, invalid bytes
}

// Decodes one UTF-8 character at text[i] and advances i; an invalid byte is one character of
// its own (U+FFFD's kind: other).
uint32_t Next(std::string_view text, size_t& i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b = byte(i);
  int length = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
  if (length == 0 || i + length > text.size()) {
    ++i;
    return 0xFFFD;
  }
  uint32_t c = length == 1 ? b : b & (0x7F >> length);
  for (int k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) {
      ++i;
      return 0xFFFD;
    }
    c = (c << 6) | (byte(i + k) & 0x3F);
  }
  i += length;
  return c;
}

// Tokens for a run of `n` characters of one kind.
int64_t RunTokens(Kind kind, int64_t n) {
  switch (kind) {
    case Kind::kLatin: return (n + 7) / 8;
    case Kind::kCjk: return (n * 5 + 3) / 4;
    case Kind::kHangul: return n;
    case Kind::kAlphabet: return (n + 2) / 3;
    case Kind::kSymbol: return 2 * n;
    case Kind::kOther: return n;
    case Kind::kSpace: return 0;
  }
  return n;
}

// KindOf for every ASCII byte, looked up instead of compared (most text is ASCII).
constexpr std::array<Kind, 128> kAsciiKinds = [] {
  std::array<Kind, 128> kinds{};
  for (uint32_t c = 0; c < 128; ++c) kinds[c] = KindOf(c);
  return kinds;
}();

}  // namespace

int64_t CountTokens(std::string_view text) {
  int64_t tokens = 0;
  Kind run_kind = Kind::kSpace;
  int64_t run = 0;
  for (size_t i = 0; i < text.size();) {
    const unsigned char b = static_cast<unsigned char>(text[i]);
    Kind kind;
    if (b < 0x80) {
      kind = kAsciiKinds[b];
      ++i;
    } else {
      kind = KindOf(Next(text, i));
    }
    if (kind != run_kind) {
      tokens += RunTokens(run_kind, run);
      run_kind = kind;
      run = 0;
    }
    ++run;
  }
  return tokens + RunTokens(run_kind, run);
}

}  // namespace loom
