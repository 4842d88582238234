// File: coordinator/analyzer/text_features.cc
#include "coordinator/analyzer/text_features.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace loom {

uint64_t Fnv1a64(absl::string_view bytes, uint64_t seed) {
  uint64_t h = seed;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

namespace {

enum class Kind { kSpace, kBreak, kPunct, kWord, kIdeograph };

// Decodes the code point at s[i]; a malformed byte decodes as itself (one byte, never a word).
int Decode(absl::string_view s, size_t i, uint32_t* cp) {
  const unsigned char c = s[i];
  int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) {
    *cp = 0xFFFD;
    return 1;
  }
  uint32_t v = n == 1 ? c : c & (0x7F >> n);
  for (int k = 1; k < n; ++k) {
    const unsigned char d = s[i + k];
    if ((d >> 6) != 2) {
      *cp = 0xFFFD;
      return 1;
    }
    v = (v << 6) | (d & 0x3F);
  }
  *cp = v;
  return n;
}

bool InRange(uint32_t cp, uint32_t lo, uint32_t hi) { return cp >= lo && cp <= hi; }

Kind Classify(uint32_t cp) {
  if (cp < 0x80) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(cp))) return Kind::kWord;
    if (cp == '\n' || cp == '.' || cp == '?' || cp == '!') return Kind::kBreak;
    if (absl::ascii_isspace(static_cast<unsigned char>(cp))) return Kind::kSpace;
    if (cp == '\'') return Kind::kWord;  // "don't", "what's"
    return Kind::kPunct;
  }
  if (InRange(cp, 0x3040, 0x30FF) || InRange(cp, 0x3400, 0x4DBF) || InRange(cp, 0x4E00, 0x9FFF) ||
      InRange(cp, 0xF900, 0xFAFF)) {
    return Kind::kIdeograph;
  }
  if (cp == 0x3002 || cp == 0xFF1F || cp == 0xFF01 || cp == 0x061F || cp == 0x0964) {
    return Kind::kBreak;  // 。？！ ؟ ।
  }
  if (cp == 0xFFFD || InRange(cp, 0x80, 0xBF) || InRange(cp, 0x2000, 0x206F) ||
      InRange(cp, 0x3000, 0x303F) || InRange(cp, 0xFF00, 0xFF0F) || InRange(cp, 0xFF1A, 0xFF20) ||
      InRange(cp, 0xFF3B, 0xFF40) || InRange(cp, 0xFF5B, 0xFF65) || InRange(cp, 0x2190, 0x2BFF)) {
    return Kind::kPunct;
  }
  return Kind::kWord;
}

// The writing system of a code point, for the "which scripts appear" features.
char Script(uint32_t cp) {
  if (InRange(cp, 0x00C0, 0x024F)) return 'l';  // Latin with diacritics
  if (InRange(cp, 0x0370, 0x03FF)) return 'g';
  if (InRange(cp, 0x0400, 0x04FF)) return 'c';
  if (InRange(cp, 0x0590, 0x05FF)) return 'h';
  if (InRange(cp, 0x0600, 0x06FF)) return 'a';
  if (InRange(cp, 0x0900, 0x0DFF)) return 'i';
  if (InRange(cp, 0x0E00, 0x0E7F)) return 't';
  if (InRange(cp, 0x3040, 0x30FF)) return 'j';
  if (InRange(cp, 0x4E00, 0x9FFF) || InRange(cp, 0x3400, 0x4DBF)) return 'z';
  if (InRange(cp, 0xAC00, 0xD7AF)) return 'k';
  return 0;
}

int Bucket(double x, const double (&edges)[5]) {
  int b = 0;
  while (b < 5 && x >= edges[b]) ++b;
  return b;
}

// The ASCII symbols counted for code density.
constexpr std::array<bool, 128> kCodeSymbols = [] {
  std::array<bool, 128> is{};
  for (char c : absl::string_view("{};=<>()[]#*/\\$_|&`^~")) is[static_cast<unsigned char>(c)] = true;
  return is;
}();

class Sink {
 public:
  // `max_features` bounds how many distinct ids this call adds (the table never fills).
  Sink(int hash_bits, size_t max_features, std::vector<uint32_t>* ids)
      : shift_(64 - hash_bits), ids_(ids), slots_(Slots(max_features)), mask_(slots_.size() - 1) {}

  void Add(char tag, absl::string_view a) { Put(Fnv1a64(a, Seed(tag))); }
  void Add(char tag, absl::string_view a, absl::string_view b) {
    uint64_t h = Fnv1a64(a, Seed(tag));
    h = Fnv1a64(" ", h);
    Put(Fnv1a64(b, h));
  }
  void Add(char tag, int value) { Add(tag, absl::string_view(reinterpret_cast<const char*>(&value), sizeof value)); }

 private:
  static uint64_t Seed(char tag) {
    return Fnv1a64(absl::string_view(&tag, 1));
  }
  // Keeps each bucket once: an open-addressing set of the ids this call has added (id + 1; 0 is
  // empty), sized for the call, so it stays in the first-level cache.
  void Put(uint64_t h) {
    const uint32_t id = static_cast<uint32_t>((h * 0x9E3779B97F4A7C15ULL) >> shift_);
    for (size_t k = id & mask_;; k = (k + 1) & mask_) {
      if (slots_[k] == id + 1) return;
      if (slots_[k] == 0) {
        slots_[k] = id + 1;
        break;
      }
    }
    ids_->push_back(id);
  }
  // A cleared per-thread table of at least twice `max_features` slots, a power of two.
  static std::vector<uint32_t>& Slots(size_t max_features) {
    thread_local std::vector<uint32_t> slots;
    size_t size = 64;
    while (size < 2 * max_features) size *= 2;
    slots.assign(size, 0);
    return slots;
  }
  const int shift_;
  std::vector<uint32_t>* ids_;
  std::vector<uint32_t>& slots_;
  const size_t mask_;
};

}  // namespace

size_t TailStart(absl::string_view text) {
  size_t tail = text.size() - std::min(text.size(), kTailBytes);
  // Only a newline in the last kTailLineBytes + 1 bytes can start a line the tail reaches back
  // to: the search stops there (a pasted book on one line is not scanned on every call).
  const absl::string_view trimmed = absl::StripTrailingAsciiWhitespace(text);
  const size_t from = text.size() > kTailLineBytes + 1 ? text.size() - kTailLineBytes - 1 : 0;
  const size_t found =
      trimmed.size() > from ? trimmed.substr(from).rfind('\n') : absl::string_view::npos;
  const size_t line = found == absl::string_view::npos ? 0 : from + found + 1;
  if (line < tail && text.size() - line <= kTailLineBytes) tail = line;
  while (tail < text.size() && (static_cast<unsigned char>(text[tail]) & 0xC0) == 0x80) ++tail;
  return tail;
}

std::string ReadWindow(absl::string_view text) {
  if (text.size() <= kHeadBytes + kTailBytes) return std::string(text);
  size_t head = kHeadBytes;
  while (head > 0 && (static_cast<unsigned char>(text[head]) & 0xC0) == 0x80) --head;
  const size_t tail = TailStart(text);
  if (tail <= head) return std::string(text);  // the head and the last line meet: all of it
  return absl::StrCat(text.substr(0, head), "\n", text.substr(tail));
}

// Long on purpose: one pass over the text emitting every feature kind in a fixed order; the
// trained weights depend on exactly these ids, so the pass stays in one place.
void ExtractFeatures(absl::string_view text, int hash_bits, std::vector<uint32_t>* ids) {
  ids->clear();
  std::string read = ReadWindow(text);
  absl::AsciiStrToLower(&read);

  std::vector<absl::string_view> tokens;
  tokens.reserve(read.size() / 4 + 8);
  std::vector<bool> starts_sentence;  // a sentence break precedes the token
  starts_sentence.reserve(tokens.capacity());
  int lines = 0, symbols = 0, digits = 0, questions = 0;
  bool scripts[128] = {};
  bool broken = true;
  size_t word_start = std::string::npos;
  auto end_word = [&](size_t end) {
    if (word_start == std::string::npos) return;
    tokens.push_back(absl::string_view(read).substr(word_start, end - word_start));
    starts_sentence.push_back(broken);
    broken = false;
    word_start = std::string::npos;
  };
  for (size_t i = 0; i < read.size();) {
    uint32_t cp;
    const int n = Decode(read, i, &cp);
    const Kind kind = Classify(cp);
    if (cp < 0x80) {
      const char c = static_cast<char>(cp);
      if (c == '\n') ++lines;
      if (c == '?') ++questions;
      if (absl::ascii_isdigit(c)) ++digits;
      symbols += kCodeSymbols[static_cast<unsigned char>(c)];
    } else {
      if (cp == 0xFF1F) ++questions;
      if (const char s = Script(cp)) scripts[static_cast<int>(s)] = true;
    }
    if (kind == Kind::kWord) {
      if (word_start == std::string::npos) word_start = i;
    } else {
      end_word(i);
      if (kind == Kind::kIdeograph) {
        tokens.push_back(absl::string_view(read).substr(i, n));
        starts_sentence.push_back(broken);
        broken = false;
      } else if (kind == Kind::kBreak) {
        broken = true;
      }
    }
    i += n;
  }
  end_word(read.size());

  // At most a word, a pair and the 4-grams of each token, and a bounded number of the rest.
  size_t max_features = 64 + 2 * 8;
  for (absl::string_view tok : tokens) max_features += 2 + (tok.size() >= 5 ? tok.size() - 1 : 0);
  Sink sink(hash_bits, max_features, ids);

  // Words, word pairs within a sentence, and 4-grams of longer words.
  for (size_t t = 0; t < tokens.size(); ++t) {
    const absl::string_view tok = tokens[t];
    sink.Add('w', tok);
    if (t > 0 && !starts_sentence[t]) sink.Add('b', tokens[t - 1], tok);
    if (tok.size() >= 5) {
      // The 4-grams of "<tok>", hashed without building the padded string.
      auto at = [&](size_t k) { return k == 0 ? '<' : k == tok.size() + 1 ? '>' : tok[k - 1]; };
      for (size_t k = 0; k + 4 <= tok.size() + 2; ++k) {
        const char gram[4] = {at(k), at(k + 1), at(k + 2), at(k + 3)};
        sink.Add('c', absl::string_view(gram, 4));
      }
    }
  }
  // Where the instruction usually is: the first words, and the last ones of a long prompt.
  if (!tokens.empty()) {
    sink.Add('f', tokens[0]);
    if (tokens.size() > 1) sink.Add('F', tokens[0], tokens[1]);
  }
  for (size_t t = 0; t < std::min<size_t>(tokens.size(), 8); ++t) sink.Add('h', tokens[t]);
  if (tokens.size() > 24) {
    for (size_t t = tokens.size() - 8; t < tokens.size(); ++t) sink.Add('e', tokens[t]);
  }
  // Shape.
  const double per100 = 100.0 / std::max<size_t>(read.size(), 1);
  static constexpr double kLength[5] = {4, 6, 8, 10, 12};  // log2 bytes
  static constexpr double kLines[5] = {1, 2, 5, 10, 30};
  static constexpr double kDensity[5] = {0.5, 1.5, 3, 6, 12};  // per 100 bytes
  sink.Add('L', Bucket(std::log2(static_cast<double>(text.size()) + 1), kLength));
  sink.Add('N', Bucket(lines, kLines));
  sink.Add('S', Bucket(symbols * per100, kDensity));
  sink.Add('D', Bucket(digits * per100, kDensity));
  sink.Add('Q', std::min(questions, 3));
  if (read.find("```") != std::string::npos) sink.Add('K', 1);
  for (int s = 0; s < 128; ++s) {
    if (scripts[s]) sink.Add('R', s);
  }
}

}  // namespace loom
