// File: coordinator/analyzer/ask_splitter.cc
#include "coordinator/analyzer/ask_splitter.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/types/span.h"
#include "coordinator/analyzer/lexicon.h"
#include "coordinator/analyzer/text_features.h"

namespace loom::asks {
namespace {

using lexicon::CountPhrase;
using lexicon::HasAny;
using lexicon::HasPhrase;
using lexicon::IsOneOf;
using lexicon::IsWordByte;

// Words that begin an instruction.
constexpr const char* kVerbs[] = {
    "write", "implement", "create", "explain", "translate", "summarize", "summarise", "list",
    "give", "compare", "describe", "convert", "calculate", "compute", "solve", "prove",
    "analyze", "analyse", "evaluate", "tell", "provide", "generate", "make", "format",
    "suggest", "return", "put", "present", "extract", "add", "fix", "review", "refactor",
    "optimize", "port", "draft", "compose", "brainstorm", "come", "invent", "imagine",
    "estimate", "define", "render", "parse", "turn", "organize", "classify", "output", "fill",
    "show", "find", "help", "recommend", "rewrite", "condense", "shorten", "recap", "boil",
    "plan", "build", "design", "outline", "discuss", "say", "do", "reason", "draw", "count",
    "rephrase", "paraphrase", "arrange", "sort", "rank", "identify", "answer", "assess",
    "explore", "determine", "justify", "simplify", "correct", "proofread", "debug", "predict",
    // The same imperatives in other languages (informal and formal), in lower case
    // (LowerPrefix lowers Latin-1 and Cyrillic capitals too).
    "écris", "écrivez", "explique", "expliquez", "traduis", "traduisez", "résume", "résumez",
    "donne", "donnez", "énumère", "comparez", "décris", "décrivez", "calcule", "calculez",
    "analysez", "crée", "créez", "fais", "faites", "proposez", "rédige", "rédigez", "corrige",
    "corrigez", "convertis", "génère", "cite", "schreib", "schreibe", "erkläre", "erklär",
    "übersetze", "übersetz", "fasse", "gib", "nenne", "vergleiche", "beschreibe", "berechne",
    "analysiere", "erstelle", "mach", "mache", "korrigiere", "formuliere", "finde", "zeige",
    "escribe", "escriba", "explica", "traduce", "traduzca", "resume", "resuma", "dame", "enumera",
    "compara", "calcula", "analiza", "crea", "haz", "genera", "convierte", "dime", "menciona",
    "escreva", "traduza", "dê", "liste", "descreva", "analise", "crie", "faça", "gere",
    "corrija", "converta", "diga", "scrivi", "scriva", "spiega", "traduci", "riassumi", "dammi",
    "elenca", "confronta", "descrivi", "calcola", "analizza", "fai", "correggi", "converti",
    "dimmi", "напиши", "напишите", "объясни", "объясните", "переведи", "переведите",
    "перескажи", "дай", "дайте", "перечисли", "сравни", "опиши", "посчитай", "вычисли",
    "проанализируй", "создай", "сделай", "составь", "придумай", "исправь", "расскажи", "найди",
    "реши", "schrijf", "vertaal", "geef", "noem", "vergelijk", "beschrijf", "bereken", "maak",
    "napisz", "wyjaśnij", "przetłumacz", "streść", "podsumuj", "podaj", "wymień", "porównaj",
    "opisz", "oblicz", "stwórz", "zrób"};

// Verbs that may start a new ask after " and " ("... and explain ...").
constexpr const char* kJoinVerbs[] = {
    "explain", "summarize", "summarise", "translate", "write", "list", "compare", "describe",
    "give", "create", "convert", "analyze", "analyse", "tell", "provide", "generate", "format",
    "calculate", "return", "put", "present", "extract", "evaluate", "prove", "then",
    "rephrase", "paraphrase", "sort", "rank", "answer", "identify", "assess", "justify",
    "écris", "explique", "traduis", "traduisez", "résume", "résumez", "donne", "décris",
    "schreib", "schreibe", "erkläre", "übersetze", "fasse", "gib", "nenne", "beschreibe",
    "escribe", "explica", "traduce", "resume", "dame", "escreva", "traduza", "resuma", "scrivi", "spiega", "traduci", "riassumi", "dammi", "descrivi",
    "напиши", "объясни", "переведи", "перескажи", "дай", "опиши", "составь", "придумай",
    "schrijf", "vertaal", "geef", "napisz", "wyjaśnij", "przetłumacz", "podsumuj", "podaj"};

// Chinese instructions start with their verb (or "请", please, or "把", which fronts the
// object); Chinese has no spaces, so these are prefixes, not words.
constexpr absl::string_view kChineseVerbs[] = {
    "写", "请", "翻译", "总结", "概括", "解释", "列出", "列举", "给出", "给我", "计算", "分析",
    "比较", "描述", "生成", "提取", "改写", "回答", "说明", "介绍", "把", "帮我", "告诉",
    "设计", "创作", "编写", "实现", "找出", "判断", "推荐", "将", "用"};
// Chinese and Japanese markers that lead a piece: then / next / finally / first / also.
struct CjkMarker {
  absl::string_view text;
  bool separate, sequential;
};
constexpr CjkMarker kCjkMarkers[] = {
    {"然后", true, true}, {"接着", true, true}, {"之后", true, true}, {"最后", true, true},
    {"再", true, true},   {"首先", true, false}, {"先", true, false},  {"另外", true, false},
    {"还有", true, false}, {"同时", true, false}, {"并且", true, false}, {"次に", true, true},
    {"それから", true, true}, {"そして", true, false}, {"最後に", true, true}, {"まず", true, false}};

// Verbs strong enough to start an ask inside pasted material.
constexpr const char* kStrongVerbs[] = {
    "explain", "summarize", "summarise", "translate", "write", "add", "convert", "list",
    "compare", "give", "create", "calculate", "extract", "return", "implement", "evaluate",
    "describe"};

constexpr const char* kQuestionWords[] = {
    "what", "who", "when", "where", "why", "how", "which", "is", "are", "can", "could", "do",
    "does", "should", "would", "will", "did", "was", "were"};


// The first bytes of `text`, lowered (lexicon::LowerCapitals) into a buffer the caller owns (no
// allocation: these run for every piece of every prompt).
template <size_t N>
absl::string_view LowerPrefix(absl::string_view text, char (&buf)[N]) {
  const size_t n = std::min(text.size(), N);
  std::memcpy(buf, text.data(), n);
  lexicon::LowerCapitals(buf, n);
  return absl::string_view(buf, n);
}

// Whether `word` is one of kVerbs: a binary search in a sorted copy (the list has hundreds of
// words and is asked about every piece of every prompt).
bool IsVerb(absl::string_view word) {
  static const std::vector<absl::string_view>* const kSorted = [] {
    auto* v = new std::vector<absl::string_view>(std::begin(kVerbs), std::end(kVerbs));
    std::sort(v->begin(), v->end());
    return v;
  }();
  return !word.empty() && std::binary_search(kSorted->begin(), kSorted->end(), word);
}

bool StartsWithAny(absl::string_view text, absl::Span<const absl::string_view> prefixes) {
  for (absl::string_view p : prefixes) {
    if (!text.empty() && text[0] == p[0] && absl::StartsWith(text, p)) return true;
  }
  return false;
}

}  // namespace

std::string FirstWord(absl::string_view lower) {
  size_t i = 0;
  while (i < lower.size() && !IsWordByte(lower[i])) ++i;
  size_t j = i;
  while (j < lower.size() && (IsWordByte(lower[j]) || lower[j] == '\'')) ++j;
  return std::string(lower.substr(i, j - i));
}


// Strips leading markers ("1.", "-", "also", "then", "please", ...) and records what they say.
Piece Normalize(std::string text) {
  Piece p;
  absl::string_view t = absl::StripAsciiWhitespace(text);
  bool changed = true;
  while (changed && !t.empty()) {
    changed = false;
    // Enumerations: "1." "2)" "-" "*" "•"
    size_t i = 0;
    while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
    if (i > 0 && i < t.size() && (t[i] == '.' || t[i] == ')') &&
        (i + 1 == t.size() || t[i + 1] == ' ')) {
      t = absl::StripLeadingAsciiWhitespace(t.substr(i + 1));
      p.explicit_separate = p.enumerated = changed = true;
      continue;
    }
    if (absl::StartsWith(t, "- ") || absl::StartsWith(t, "* ") || absl::StartsWith(t, "\xe2\x80\xa2")) {
      t = absl::StripLeadingAsciiWhitespace(t.substr(t[0] == '-' || t[0] == '*' ? 2 : 3));
      p.explicit_separate = p.enumerated = changed = true;
      continue;
    }
    char lower_buf[24];
    const absl::string_view lower = LowerPrefix(t, lower_buf);
    struct Marker {
      absl::string_view word;
      bool separate, sequential;
    };
    for (const Marker& m : {Marker{"and then", true, true}, Marker{"after that", true, true},
                            Marker{"afterwards", true, true}, Marker{"then", true, true},
                            Marker{"next", true, true}, Marker{"finally", true, true},
                            Marker{"also", true, false}, Marker{"additionally", true, false},
                            Marker{"plus", true, false}, Marker{"first", true, false},
                            Marker{"firstly", true, false}, Marker{"second", true, false},
                            Marker{"secondly", true, false}, Marker{"third", true, false},
                            Marker{"lastly", true, false}, Marker{"and", false, false},
                            Marker{"please", false, false}, Marker{"now", false, false},
                            Marker{"can you", false, false}, Marker{"could you", false, false},
                            // French, German, Spanish, Portuguese, Italian, Russian, Dutch, Polish
                            Marker{"et puis", true, true}, Marker{"puis", true, true},
                            Marker{"ensuite", true, true}, Marker{"enfin", true, true},
                            Marker{"d'abord", true, false}, Marker{"aussi", true, false},
                            Marker{"und dann", true, true}, Marker{"dann", true, true},
                            Marker{"danach", true, true}, Marker{"zuerst", true, false},
                            Marker{"zunächst", true, false}, Marker{"außerdem", true, false},
                            Marker{"y luego", true, true}, Marker{"luego", true, true},
                            Marker{"después", true, true}, Marker{"primero", true, false},
                            Marker{"también", true, false}, Marker{"e depois", true, true},
                            Marker{"depois", true, true}, Marker{"em seguida", true, true},
                            Marker{"primeiro", true, false}, Marker{"e poi", true, true},
                            Marker{"poi", true, true}, Marker{"infine", true, true},
                            Marker{"prima", true, false}, Marker{"inoltre", true, false},
                            Marker{"а затем", true, true}, Marker{"затем", true, true},
                            Marker{"а потом", true, true}, Marker{"потом", true, true},
                            Marker{"сначала", true, false}, Marker{"также", true, false},
                            Marker{"daarna", true, true}, Marker{"eerst", true, false},
                            Marker{"potem", true, true}, Marker{"następnie", true, true},
                            Marker{"najpierw", true, false}, Marker{"a potem", true, true},
                            Marker{"a następnie", true, true}, Marker{"et", false, false},
                            Marker{"und", false, false}, Marker{"bitte", false, false},
                            Marker{"por favor", false, false}, Marker{"per favore", false, false},
                            Marker{"пожалуйста", false, false}}) {
      const size_t n = m.word.size();
      if (m.word[0] != lower[0]) continue;  // most markers fail here, without a memcmp
      if (absl::StartsWith(lower, m.word) && (lower.size() == n || !IsWordByte(lower[n]))) {
        t = absl::StripLeadingAsciiWhitespace(t.substr(n));
        if (!t.empty() && t[0] == ',') t = absl::StripLeadingAsciiWhitespace(t.substr(1));
        p.explicit_separate |= m.separate;
        p.sequential |= m.sequential;
        changed = true;
        break;
      }
    }
    if (changed) continue;
    for (const CjkMarker& m : kCjkMarkers) {
      if (t[0] == m.text[0] && absl::StartsWith(t, m.text) && t.size() > m.text.size()) {
        t = t.substr(m.text.size());
        while (absl::ConsumePrefix(&t, "，") || absl::ConsumePrefix(&t, "、")) {}
        p.explicit_separate |= m.separate;
        p.sequential |= m.sequential;
        changed = true;
        break;
      }
    }
  }
  // A step that follows another: "Once scores are assigned, calculate ..." (the clause goes
  // when an instruction follows it) and "... afterward(s)." at the end.
  char head_buf[96];
  const absl::string_view head = LowerPrefix(t, head_buf);
  for (absl::string_view lead : {"once ", "after ", "when ", "having "}) {
    if (!absl::StartsWith(head, lead)) continue;
    const size_t comma = head.find(", ");
    if (comma == std::string::npos) break;
    const absl::string_view rest = t.substr(comma + 2);
    if (!IsInstruction(rest, /*strong_only=*/true)) break;
    t = rest;
    p.explicit_separate = p.sequential = true;
    break;
  }
  absl::string_view end = absl::StripTrailingAsciiWhitespace(t);
  while (!end.empty() && (end.back() == '.' || end.back() == '!')) end.remove_suffix(1);
  const std::string tail = absl::AsciiStrToLower(end.substr(end.size() - std::min<size_t>(end.size(), 12)));
  if (absl::EndsWith(tail, " afterward") || absl::EndsWith(tail, " afterwards")) {
    p.explicit_separate = p.sequential = true;
  }
  p.text = std::string(t);
  return p;
}

AspectIntro FindAspectIntro(absl::string_view instruction) {
  AspectIntro none;
  const absl::string_view t = absl::StripTrailingAsciiWhitespace(instruction);
  if (t.empty() || t.back() != ':') return none;
  const std::string lower = absl::AsciiStrToLower(t);
  const size_t following = lower.rfind("the following");
  if (following == std::string::npos) return none;
  // The aspect phrase comes right before "the following" (a few words at most between).
  static constexpr absl::string_view kPhrases[] = {
      "focusing on", "focused on", "focus on", "concentrating on", "concentrate on", "covering",
      "addressing", "considering", "in terms of", "with respect to", "looking at", "regarding",
      "with a focus on", "paying attention to", "touching on", "with emphasis on"};
  for (absl::string_view phrase : kPhrases) {
    const size_t at = absl::string_view(lower).rfind(phrase, following);
    if (at == std::string::npos || at == 0 || following - (at + phrase.size()) > 12) continue;
    if (lexicon::IsWordByte(lower[at - 1])) continue;  // a word boundary before the phrase
    return {at, following};
  }
  return none;
}

bool IntroducesMaterial(absl::string_view instruction) {
  static constexpr const char* kMaterialVerbs[] = {
      "translate", "summarize", "summarise", "rewrite", "rephrase", "paraphrase", "proofread",
      "correct", "convert", "classify", "categorize", "categorise", "sort", "format", "extract",
      "edit", "shorten", "simplify", "tag", "label", "rank", "alphabetize"};
  const absl::string_view t = absl::StripTrailingAsciiWhitespace(instruction);
  if (t.empty() || t.back() != ':') return false;
  return IsOneOf(FirstWord(absl::AsciiStrToLower(t.substr(0, 24))), kMaterialVerbs);
}

bool IsConstraint(absl::string_view text) {
  static constexpr absl::string_view kLeads[] = {
      "do not ", "don't ", "dont ", "never ", "avoid ", "without ", "no need to ", "keep it ",
      "keep the ", "make sure ", "be sure ", "try not to ", "refrain from ", "please do not ",
      "please don't ", "please avoid ", "please keep ", "use only ", "only use ", "limit it ",
      "limit the ", "stick to ", "use your own words", "in your own words", "be concise",
      "be brief"};
  char buf[32];
  const absl::string_view lower = LowerPrefix(text, buf);
  for (absl::string_view lead : kLeads) {
    if (absl::StartsWith(lower, lead)) return true;
  }
  return false;
}

bool IsInstruction(absl::string_view text, bool strong_only) {
  // Only the first word matters, and no verb or question word is this long.
  constexpr size_t kFirstBytes = 48;
  char buf[kFirstBytes];
  const absl::string_view lower = LowerPrefix(text, buf);
  const std::string first = FirstWord(lower);
  if (strong_only) return IsOneOf(first, kStrongVerbs);
  if (IsVerb(first)) return true;
  // An Italian, Spanish or Portuguese imperative with its object pronoun attached:
  // "traducila", "spiegami", "dammelo" (one or two pronouns).
  std::string bare = first;
  for (int pronouns = 0; pronouns < 2; ++pronouns) {
    bool stripped = false;
    for (absl::string_view clitic : {"gli", "los", "las", "nos", "la", "lo", "le", "li", "ne",
                                     "mi", "ti", "ci", "vi", "me", "te", "se"}) {
      if (bare.size() > clitic.size() + 3 && absl::EndsWith(bare, clitic)) {
        bare.resize(bare.size() - clitic.size());
        stripped = true;
        break;
      }
    }
    if (!stripped) break;
    if (IsVerb(bare)) return true;
  }
  if (IsOneOf(first, kQuestionWords)) return true;
  if (StartsWithAny(absl::StripLeadingAsciiWhitespace(text), kChineseVerbs)) return true;
  absl::string_view trimmed = absl::StripTrailingAsciiWhitespace(text);
  while (absl::ConsumeSuffix(&trimmed, "。")) {}
  // A Japanese request ends with its verb: "…してください", "…して下さい".
  // (A Chinese question is not one by its "？" alone: pasted questions end the same way.)
  // A clause cut before "、次に" ends in its verb's te-form ("要約して"); the request itself may
  // be followed by its material ("…翻訳してください。今日は…"), sentences not being cut at "。".
  return !trimmed.empty() &&
         (trimmed.back() == '?' || absl::EndsWith(trimmed, "して") ||
          absl::StrContains(trimmed, "ください") || absl::StrContains(trimmed, "下さい"));
}

// Splits into sentences at . ? ! followed by whitespace and a capital, digit, dash or bullet,
// and at newlines. Abbreviations like "e.g." do not end a sentence.
std::vector<std::string> Sentences(const std::string& text) {
  std::vector<std::string> out;
  const absl::string_view all(text);
  size_t start = 0;  // the current sentence is all[start, i]
  auto flush = [&](size_t end) {
    const absl::string_view current = all.substr(start, end - start);
    if (!absl::StripAsciiWhitespace(current).empty()) out.emplace_back(current);
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      flush(i);
      start = i + 1;
      continue;
    }

    if ((c == '.' || c == '?' || c == '!') && i + 2 < text.size() && text[i + 1] == ' ') {
      const unsigned char next = text[i + 2];
      const bool starts = std::isupper(next) || std::isdigit(next) || next == '-' || next == '*' ||
                          next >= 0x80;
      if (!starts) continue;
      const absl::string_view current = all.substr(start, i + 1 - start);
      // The abbreviations are at most 4 bytes: only the end of the sentence is lowered.
      const std::string lower =
          absl::AsciiStrToLower(current.substr(current.size() - std::min<size_t>(current.size(), 4)));
      const bool abbreviation = absl::EndsWith(lower, "e.g.") || absl::EndsWith(lower, "i.e.") ||
                                absl::EndsWith(lower, " vs.") || absl::EndsWith(lower, "mr.") ||
                                absl::EndsWith(lower, "dr.") || absl::EndsWith(lower, "etc.");
      // "1. Explain ..." is one sentence: a list number ends nothing.
      const absl::string_view so_far = absl::StripLeadingAsciiWhitespace(current);
      const bool list_number =
          so_far.size() >= 2 && so_far.size() <= 4 &&
          std::all_of(so_far.begin(), so_far.end() - 1,
                      [](char d) { return std::isdigit(static_cast<unsigned char>(d)); });
      if (!abbreviation && !list_number) {
        out.emplace_back(current);
        start = i + 1;
      }
    }
  }
  flush(text.size());
  return out;
}

// Splits one sentence's instruction part at connectors: "and then", ", then", "; ", "also",
// "after that", and "and <verb>". Text after the first ": " stays with the last piece.
std::vector<std::string> SplitConnectors(const std::string& sentence) {
  size_t colon = sentence.find(": ");
  const std::string head = sentence.substr(0, colon);
  const std::string tail = colon == std::string::npos ? "" : sentence.substr(colon);
  const std::string lower = absl::AsciiStrToLower(head);
  // Every connector starts with ' ', ',' or ';': one pass looks for them only there (in
  // position order, so the cuts come out sorted).
  struct Connector {
    absl::string_view text;
    bool need_verb;  // cut only when a joinable verb follows
  };
  static constexpr Connector kConnectors[] = {
      {" and then ", false}, {", then ", false},       {"; ", true},
      {", and also ", false}, {" and also ", false},   {", also ", false},
      {" also ", true},       {", after that ", false}, {" then ", true},
      {" and ", true},        {", and ", true},
      // The same in French, German, Spanish, Portuguese, Italian, Russian, Dutch, Polish.
      {" et puis ", false},   {", puis ", false},       {" puis ", true},
      {", ensuite ", false},  {" ensuite ", true},      {" et ", true},
      {" und dann ", false},  {", dann ", true},        {" danach ", true},
      {", danach ", false},   {" und ", true},          {" y luego ", false},
      {", luego ", false},    {" luego ", true},        {" y después ", false},
      {", después ", false},  {" y ", true},            {" e depois ", false},
      {", depois ", false},   {" em seguida ", true},   {" e poi ", false},
      {", poi ", false},      {" poi ", true},          {" e ", true},
      {" а затем ", false},   {", затем ", false},      {" затем ", true},
      {" а потом ", false},   {", потом ", false},      {" и ", true},
      {" en daarna ", false}, {", daarna ", false},     {" en ", true},
      {" a potem ", false},   {", potem ", false},      {" a następnie ", false},
      {", następnie ", false}, {" i ", true}};
  // Chinese and Japanese: after a full-width comma or semicolon, a marker of the next step.
  static constexpr absl::string_view kCjkConnectors[] = {
      "，然后", "，接着", "，之后", "，最后", "，再", "，并且", "；", "、次に", "、それから"};
  // The connectors by their second byte (the first after ' ', ',' or ';'): each position tries
  // only the few that can match.
  static const std::array<std::vector<uint8_t>, 256>* const kBySecond = [] {
    auto* by = new std::array<std::vector<uint8_t>, 256>();
    for (size_t i = 0; i < std::size(kConnectors); ++i) {
      (*by)[static_cast<unsigned char>(kConnectors[i].text[1])].push_back(static_cast<uint8_t>(i));
    }
    return by;
  }();
  std::vector<size_t> cuts;
  const absl::string_view view(lower);
  for (size_t pos = 0; pos < view.size(); ++pos) {
    const char c = view[pos];
    if ((c == '\xEF' || c == '\xE3') && pos + 3 < view.size()) {  // "，", "；" or "、" first
      const absl::string_view rest = view.substr(pos);
      for (absl::string_view k : kCjkConnectors) {
        if (rest[1] == k[1] && absl::StartsWith(rest, k) && rest.size() > k.size()) {
          cuts.push_back(pos);
          break;
        }
      }
      continue;
    }
    if ((c != ' ' && c != ',' && c != ';') || pos + 1 >= view.size()) continue;
    for (uint8_t i : (*kBySecond)[static_cast<unsigned char>(view[pos + 1])]) {
      const Connector& k = kConnectors[i];
      if (k.text[0] != c || pos + k.text.size() > view.size() ||
          view.compare(pos, k.text.size(), k.text) != 0) {
        continue;
      }
      if (k.need_verb && !IsOneOf(FirstWord(view.substr(pos + k.text.size())), kJoinVerbs)) {
        continue;
      }
      cuts.push_back(pos);
      break;
    }
  }
  std::vector<std::string> pieces;
  size_t start = 0;
  for (size_t cut : cuts) {
    if (cut <= start) continue;
    pieces.push_back(head.substr(start, cut - start));
    start = cut;
  }
  pieces.push_back(head.substr(start) + tail);
  // Drop a leading comma or semicolon left by the cut.
  for (auto& p : pieces) {
    absl::string_view v = absl::StripLeadingAsciiWhitespace(p);
    for (bool stripped = true; stripped; v = absl::StripLeadingAsciiWhitespace(v)) {
      stripped = absl::ConsumePrefix(&v, ",") || absl::ConsumePrefix(&v, ";") ||
                 absl::ConsumePrefix(&v, "，") || absl::ConsumePrefix(&v, "；") ||
                 absl::ConsumePrefix(&v, "、");
    }
    p = std::string(v);
  }
  return pieces;
}

// The sentences of `text`, each marked true when it lies in the middle of a long prompt. The
// middle of a long prompt is material, passed on whole: asks are at its start or end, and the
// cost of reading a pasted book stays bounded. The cuts fall on line breaks when there are any.
std::vector<std::pair<std::string, bool>> WindowSentences(const std::string& text) {
  std::vector<std::pair<std::string, bool>> out;
  if (text.size() <= kHeadBytes + kTailBytes) {
    for (std::string& s : Sentences(text)) out.emplace_back(std::move(s), false);
    return out;
  }
  size_t head = text.rfind('\n', kHeadBytes);
  if (head == std::string::npos || head < kHeadBytes / 2) head = kHeadBytes;
  // The tail the classifier reads (a short last line whole), moved on to a line break when it
  // starts inside a line.
  size_t tail = TailStart(text);
  if (tail > 0 && text[tail - 1] != '\n') {
    const size_t newline = text.find('\n', tail);
    if (newline != std::string::npos) tail = newline;
  }
  // Never cut inside a UTF-8 sequence.
  while (head > 0 && (static_cast<unsigned char>(text[head]) & 0xC0) == 0x80) --head;
  if (tail <= head) {
    for (std::string& s : Sentences(text)) out.emplace_back(std::move(s), false);
    return out;
  }
  for (std::string& s : Sentences(text.substr(0, head))) out.emplace_back(std::move(s), false);
  const std::string middle(absl::StripAsciiWhitespace(absl::string_view(text).substr(head, tail - head)));
  if (!middle.empty()) out.emplace_back(middle, true);
  for (std::string& s : Sentences(text.substr(tail))) out.emplace_back(std::move(s), false);
  return out;
}

}  // namespace loom::asks
