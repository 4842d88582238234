// File: coordinator/analyzer/lexicon.h
// The hand-written lexicon: cue phrases with a weight per category (the table is in
// lexicon.cc, kept in one place so it can be read and tuned as a whole), and the text helpers
// the ask splitter shares with it. Score() is what the lexicon thinks a text is about: the sum
// of the weights of the cues it contains (at most two occurrences each), with pasted material
// (after the first ": ", or quoted) counting 0.3, code syntax counting for code, and
// "translate ... to Rust" counting as code, not translation. The category classifier reads
// these scores as inputs (category_model.h); the splitter uses them to tell an ask with no
// skill of its own. A long text is read through ReadWindow (text_features.h).
//
// Pure functions; thread-safe.
#ifndef LOOM_COORDINATOR_ANALYZER_LEXICON_H_
#define LOOM_COORDINATOR_ANALYZER_LEXICON_H_

#include <array>
#include <cstddef>
#include <cstring>
#include <string>

#include "absl/strings/string_view.h"

namespace loom::lexicon {

// Raw scores of `text`, indexed by TaskCategory (index 0 unused).
std::array<double, 9> Score(const std::string& text);

// Letters, digits, '_' and every byte of a multi-byte UTF-8 character. A table: it is asked of
// every byte of every text the analyzer reads, several times.
inline constexpr std::array<bool, 256> kWordBytes = [] {
  std::array<bool, 256> is{};
  for (int c = 0; c < 256; ++c) {
    is[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
            c >= 0x80;
  }
  return is;
}();
inline bool IsWordByte(unsigned char c) { return kWordBytes[c]; }
// Occurrences of `phrase` in `lower` at word boundaries (for ASCII phrases).
int CountPhrase(absl::string_view lower, absl::string_view phrase);
bool HasPhrase(absl::string_view lower, absl::string_view phrase);
// Splits `text` into what the client wrote as instructions and what it pasted or quoted:
// quoted spans are dropped, text after the first ": " goes to `payload`.
void SplitInstruction(absl::string_view text, std::string* instruction, std::string* payload);
// Distinct code-syntax markers in `text`, at most three. `symbols_only` leaves out keywords
// that also occur in prose ("return the result").
int CodeSyntax(absl::string_view text, bool symbols_only = false);

template <size_t N>
bool HasAny(absl::string_view lower, const char* const (&phrases)[N]) {
  for (const char* p : phrases) {
    if (HasPhrase(lower, p)) return true;
  }
  return false;
}

// Lowers, in place, the capitals of ASCII, of Latin-1 (À-Þ) and of Russian Cyrillic (А-Я, Ё),
// each character keeping its length, so "Écris", "Übersetze", "Переведи" read as the cues and
// verbs written in lower case. A two-byte character cut by the end of `bytes` stays as it is.
void LowerCapitals(char* bytes, size_t n);

// Compares without measuring each word first (no strlen per candidate).
template <size_t N>
bool IsOneOf(absl::string_view word, const char* const (&words)[N]) {
  for (const char* w : words) {
    if (!word.empty() && w[0] == word[0] && std::strncmp(w, word.data(), word.size()) == 0 &&
        w[word.size()] == '\0') {
      return true;
    }
  }
  return false;
}

}  // namespace loom::lexicon

#endif  // LOOM_COORDINATOR_ANALYZER_LEXICON_H_
