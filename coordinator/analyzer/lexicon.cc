// File: coordinator/analyzer/lexicon.cc
#include "coordinator/analyzer/lexicon.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/categories.h"
#include "coordinator/analyzer/text_features.h"
#include "loom/v1/common.pb.h"

namespace loom::lexicon {
namespace {

using C = v1::TaskCategory;

struct Cue {
  absl::string_view phrase;  // lowercase; ASCII phrases match at word boundaries
  C category;
  double weight;
};

// The lexicon. Weights say how strongly a phrase points at a category; a request's category is
// the one with the largest sum. Kept in one table so it can be read and tuned as a whole.
constexpr Cue kCues[] = {
    // code
    {"code", C::TASK_CATEGORY_CODE, 1.5}, {"function", C::TASK_CATEGORY_CODE, 2},
    {"implement", C::TASK_CATEGORY_CODE, 2}, {"script", C::TASK_CATEGORY_CODE, 2},
    {"bug", C::TASK_CATEGORY_CODE, 2}, {"debug", C::TASK_CATEGORY_CODE, 2.5},
    {"compile", C::TASK_CATEGORY_CODE, 1.5}, {"refactor", C::TASK_CATEGORY_CODE, 3},
    {"regex", C::TASK_CATEGORY_CODE, 3}, {"unit test", C::TASK_CATEGORY_CODE, 2.5},
    {"unit tests", C::TASK_CATEGORY_CODE, 2.5}, {"class", C::TASK_CATEGORY_CODE, 1.2},
    {"method", C::TASK_CATEGORY_CODE, 1.2}, {"methods", C::TASK_CATEGORY_CODE, 1},
    {"interface", C::TASK_CATEGORY_CODE, 1.2}, {"component", C::TASK_CATEGORY_CODE, 1.2},
    {"query", C::TASK_CATEGORY_CODE, 1.2}, {"dockerfile", C::TASK_CATEGORY_CODE, 3},
    {"segfault", C::TASK_CATEGORY_CODE, 3}, {"api", C::TASK_CATEGORY_CODE, 1},
    {"algorithm", C::TASK_CATEGORY_CODE, 1}, {"program", C::TASK_CATEGORY_CODE, 1},
    {"fix", C::TASK_CATEGORY_CODE, 1}, {"error handling", C::TASK_CATEGORY_CODE, 1.5},
    {"race condition", C::TASK_CATEGORY_CODE, 2}, {"race conditions", C::TASK_CATEGORY_CODE, 2},
    {"stack trace", C::TASK_CATEGORY_CODE, 3}, {"recursive", C::TASK_CATEGORY_CODE, 1.5},
    {"python", C::TASK_CATEGORY_CODE, 2}, {"rust", C::TASK_CATEGORY_CODE, 2},
    {"c++", C::TASK_CATEGORY_CODE, 2}, {"c#", C::TASK_CATEGORY_CODE, 2},
    {"java", C::TASK_CATEGORY_CODE, 2}, {"javascript", C::TASK_CATEGORY_CODE, 2},
    {"typescript", C::TASK_CATEGORY_CODE, 2}, {"golang", C::TASK_CATEGORY_CODE, 2},
    {"go code", C::TASK_CATEGORY_CODE, 2}, {"go function", C::TASK_CATEGORY_CODE, 2},
    {"in go", C::TASK_CATEGORY_CODE, 1.5}, {"kotlin", C::TASK_CATEGORY_CODE, 2},
    {"swift", C::TASK_CATEGORY_CODE, 1.5}, {"ruby", C::TASK_CATEGORY_CODE, 1.5},
    {"php", C::TASK_CATEGORY_CODE, 2}, {"sql", C::TASK_CATEGORY_CODE, 2},
    {"bash", C::TASK_CATEGORY_CODE, 2}, {"shell", C::TASK_CATEGORY_CODE, 1},
    {"haskell", C::TASK_CATEGORY_CODE, 2}, {"scala", C::TASK_CATEGORY_CODE, 2},
    {"react", C::TASK_CATEGORY_CODE, 1.5}, {"pytest", C::TASK_CATEGORY_CODE, 2},
    {"in c", C::TASK_CATEGORY_CODE, 1.5}, {"c code", C::TASK_CATEGORY_CODE, 2},
    {"代码", C::TASK_CATEGORY_CODE, 2.5}, {"函数", C::TASK_CATEGORY_CODE, 2.5},
    {"编程", C::TASK_CATEGORY_CODE, 2.5}, {"程序", C::TASK_CATEGORY_CODE, 2},
    // reasoning
    {"why", C::TASK_CATEGORY_REASONING, 1}, {"explain", C::TASK_CATEGORY_REASONING, 1},
    {"prove", C::TASK_CATEGORY_REASONING, 2.5}, {"proof", C::TASK_CATEGORY_REASONING, 2},
    {"calculate", C::TASK_CATEGORY_REASONING, 2.5}, {"compute", C::TASK_CATEGORY_REASONING, 1.5},
    {"solve", C::TASK_CATEGORY_REASONING, 2.5}, {"probability", C::TASK_CATEGORY_REASONING, 2.5},
    {"compare", C::TASK_CATEGORY_REASONING, 2}, {"comparison", C::TASK_CATEGORY_REASONING, 1.5},
    {"difference", C::TASK_CATEGORY_REASONING, 1.5}, {"differences", C::TASK_CATEGORY_REASONING, 1.5},
    {"analyze", C::TASK_CATEGORY_REASONING, 2}, {"analyse", C::TASK_CATEGORY_REASONING, 2},
    {"analysis", C::TASK_CATEGORY_REASONING, 1.5}, {"evaluate", C::TASK_CATEGORY_REASONING, 2},
    {"pros and cons", C::TASK_CATEGORY_REASONING, 2.5}, {"trade-offs", C::TASK_CATEGORY_REASONING, 2.5},
    {"trade-off", C::TASK_CATEGORY_REASONING, 2.5}, {"tradeoffs", C::TASK_CATEGORY_REASONING, 2.5},
    {"step by step", C::TASK_CATEGORY_REASONING, 1.5}, {"reasoning", C::TASK_CATEGORY_REASONING, 2},
    {"reason through", C::TASK_CATEGORY_REASONING, 2}, {"how many ways", C::TASK_CATEGORY_REASONING, 3},
    {"estimate", C::TASK_CATEGORY_REASONING, 2}, {"complexity", C::TASK_CATEGORY_REASONING, 1.5},
    {"argument", C::TASK_CATEGORY_REASONING, 1.5}, {"is it better", C::TASK_CATEGORY_REASONING, 1.5},
    {"which is better", C::TASK_CATEGORY_REASONING, 1}, {"equation", C::TASK_CATEGORY_REASONING, 2.5},
    {"equations", C::TASK_CATEGORY_REASONING, 2.5}, {"break-even", C::TASK_CATEGORY_REASONING, 3},
    {"interest", C::TASK_CATEGORY_REASONING, 1}, {"catch up", C::TASK_CATEGORY_REASONING, 1.5},
    {"how much", C::TASK_CATEGORY_REASONING, 1}, {"older than", C::TASK_CATEGORY_REASONING, 1.5},
    {"paradox", C::TASK_CATEGORY_REASONING, 1.5}, {"if all", C::TASK_CATEGORY_REASONING, 2.5}, {"moral", C::TASK_CATEGORY_REASONING, 1},
    {"logic", C::TASK_CATEGORY_REASONING, 2}, {"math", C::TASK_CATEGORY_REASONING, 2},
    {"average", C::TASK_CATEGORY_REASONING, 1.5}, {"per", C::TASK_CATEGORY_REASONING, 0.5},
    {"计算", C::TASK_CATEGORY_REASONING, 3}, {"数学", C::TASK_CATEGORY_REASONING, 3},
    {"为什么", C::TASK_CATEGORY_REASONING, 1.5}, {"推理", C::TASK_CATEGORY_REASONING, 2.5},
    // creative
    {"poem", C::TASK_CATEGORY_CREATIVE, 3}, {"haiku", C::TASK_CATEGORY_CREATIVE, 3},
    {"story", C::TASK_CATEGORY_CREATIVE, 2.5}, {"limerick", C::TASK_CATEGORY_CREATIVE, 3},
    {"sonnet", C::TASK_CATEGORY_CREATIVE, 3}, {"song", C::TASK_CATEGORY_CREATIVE, 2},
    {"lyrics", C::TASK_CATEGORY_CREATIVE, 2.5}, {"slogan", C::TASK_CATEGORY_CREATIVE, 3},
    {"joke", C::TASK_CATEGORY_CREATIVE, 3}, {"brainstorm", C::TASK_CATEGORY_CREATIVE, 3},
    {"ideas", C::TASK_CATEGORY_CREATIVE, 1.5}, {"names for", C::TASK_CATEGORY_CREATIVE, 2},
    {"imagine", C::TASK_CATEGORY_CREATIVE, 2.5}, {"fictional", C::TASK_CATEGORY_CREATIVE, 2.5},
    {"character", C::TASK_CATEGORY_CREATIVE, 1}, {"plot", C::TASK_CATEGORY_CREATIVE, 1.5},
    {"novel", C::TASK_CATEGORY_CREATIVE, 1.5}, {"fable", C::TASK_CATEGORY_CREATIVE, 3},
    {"dialogue", C::TASK_CATEGORY_CREATIVE, 2}, {"toast", C::TASK_CATEGORY_CREATIVE, 2},
    {"jingle", C::TASK_CATEGORY_CREATIVE, 3}, {"invent", C::TASK_CATEGORY_CREATIVE, 2},
    {"creative", C::TASK_CATEGORY_CREATIVE, 2.5}, {"bedtime", C::TASK_CATEGORY_CREATIVE, 1.5},
    {"birthday message", C::TASK_CATEGORY_CREATIVE, 2}, {"compose", C::TASK_CATEGORY_CREATIVE, 1.5},
    {"come up with", C::TASK_CATEGORY_CREATIVE, 1.5}, {"playful", C::TASK_CATEGORY_CREATIVE, 1.5},
    {"funny", C::TASK_CATEGORY_CREATIVE, 1.5}, {"sci-fi", C::TASK_CATEGORY_CREATIVE, 2},
    {"opening paragraph", C::TASK_CATEGORY_CREATIVE, 2}, {"essay", C::TASK_CATEGORY_CREATIVE, 1},
    {"诗", C::TASK_CATEGORY_CREATIVE, 3}, {"故事", C::TASK_CATEGORY_CREATIVE, 3},
    {"创作", C::TASK_CATEGORY_CREATIVE, 2.5}, {"想法", C::TASK_CATEGORY_CREATIVE, 1.5},
    // factual
    {"what is", C::TASK_CATEGORY_FACTUAL, 1.2}, {"what are", C::TASK_CATEGORY_FACTUAL, 0.8},
    {"who was", C::TASK_CATEGORY_FACTUAL, 2.5}, {"who is", C::TASK_CATEGORY_FACTUAL, 2},
    {"who wrote", C::TASK_CATEGORY_FACTUAL, 3}, {"who invented", C::TASK_CATEGORY_FACTUAL, 3},
    {"who discovered", C::TASK_CATEGORY_FACTUAL, 3}, {"when did", C::TASK_CATEGORY_FACTUAL, 2.5},
    {"when was", C::TASK_CATEGORY_FACTUAL, 2.5}, {"what year", C::TASK_CATEGORY_FACTUAL, 2.5},
    {"where is", C::TASK_CATEGORY_FACTUAL, 2.5}, {"how many", C::TASK_CATEGORY_FACTUAL, 1.2},
    {"how tall", C::TASK_CATEGORY_FACTUAL, 2.5}, {"capital of", C::TASK_CATEGORY_FACTUAL, 3},
    {"history of", C::TASK_CATEGORY_FACTUAL, 2.5}, {"tell me about", C::TASK_CATEGORY_FACTUAL, 2}, {"tell me what", C::TASK_CATEGORY_FACTUAL, 2},
    {"define", C::TASK_CATEGORY_FACTUAL, 2.5}, {"definition", C::TASK_CATEGORY_FACTUAL, 2},
    {"stand for", C::TASK_CATEGORY_FACTUAL, 2.5}, {"which planet", C::TASK_CATEGORY_FACTUAL, 2},
    {"what causes", C::TASK_CATEGORY_FACTUAL, 2}, {"largest", C::TASK_CATEGORY_FACTUAL, 1.2},
    {"tallest", C::TASK_CATEGORY_FACTUAL, 1.5}, {"closest", C::TASK_CATEGORY_FACTUAL, 1},
    {"population", C::TASK_CATEGORY_FACTUAL, 1.5}, {"invented", C::TASK_CATEGORY_FACTUAL, 1.5},
    {"what language", C::TASK_CATEGORY_FACTUAL, 2}, {"boiling point", C::TASK_CATEGORY_FACTUAL, 2},
    {"speed of light", C::TASK_CATEGORY_FACTUAL, 2}, {"located", C::TASK_CATEGORY_FACTUAL, 1.5},
    {"什么是", C::TASK_CATEGORY_FACTUAL, 2}, {"是谁", C::TASK_CATEGORY_FACTUAL, 2.5},
    {"哪里", C::TASK_CATEGORY_FACTUAL, 2}, {"哪个", C::TASK_CATEGORY_FACTUAL, 1.5},
    {"什么时候", C::TASK_CATEGORY_FACTUAL, 2},
    // summarization
    {"summarize", C::TASK_CATEGORY_SUMMARIZATION, 3.5}, {"summarise", C::TASK_CATEGORY_SUMMARIZATION, 3.5},
    {"summary", C::TASK_CATEGORY_SUMMARIZATION, 3}, {"tl;dr", C::TASK_CATEGORY_SUMMARIZATION, 3.5},
    {"tldr", C::TASK_CATEGORY_SUMMARIZATION, 3.5}, {"condense", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"key points", C::TASK_CATEGORY_SUMMARIZATION, 3}, {"news story", C::TASK_CATEGORY_SUMMARIZATION, 1.5}, {"recap", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"gist", C::TASK_CATEGORY_SUMMARIZATION, 3}, {"shorten", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"abstract", C::TASK_CATEGORY_SUMMARIZATION, 2}, {"overview", C::TASK_CATEGORY_SUMMARIZATION, 2},
    {"key takeaways", C::TASK_CATEGORY_SUMMARIZATION, 3}, {"boil this down", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"main arguments", C::TASK_CATEGORY_SUMMARIZATION, 2}, {"essentials", C::TASK_CATEGORY_SUMMARIZATION, 2},
    {"in a few sentences", C::TASK_CATEGORY_SUMMARIZATION, 1.5}, {"in one sentence", C::TASK_CATEGORY_SUMMARIZATION, 1.5},
    {"总结", C::TASK_CATEGORY_SUMMARIZATION, 3.5}, {"摘要", C::TASK_CATEGORY_SUMMARIZATION, 3.5},
    {"概括", C::TASK_CATEGORY_SUMMARIZATION, 3.5}, {"归纳", C::TASK_CATEGORY_SUMMARIZATION, 3},
    // translation (the language names are handled in Score)
    {"translate", C::TASK_CATEGORY_TRANSLATION, 2.5}, {"translation", C::TASK_CATEGORY_TRANSLATION, 2},
    {"how do you say", C::TASK_CATEGORY_TRANSLATION, 3}, {"how would you say", C::TASK_CATEGORY_TRANSLATION, 3},
    {"mean in", C::TASK_CATEGORY_TRANSLATION, 2}, {"render this", C::TASK_CATEGORY_TRANSLATION, 1},
    {"put this into", C::TASK_CATEGORY_TRANSLATION, 1},
    {"翻译", C::TASK_CATEGORY_TRANSLATION, 4}, {"译成", C::TASK_CATEGORY_TRANSLATION, 3},
    // structured
    {"json", C::TASK_CATEGORY_STRUCTURED, 3}, {"csv", C::TASK_CATEGORY_STRUCTURED, 3},
    {"yaml", C::TASK_CATEGORY_STRUCTURED, 3}, {"xml", C::TASK_CATEGORY_STRUCTURED, 2.5},
    {"table", C::TASK_CATEGORY_STRUCTURED, 1.5}, {"a table", C::TASK_CATEGORY_STRUCTURED, 1.5},
    {"markdown table", C::TASK_CATEGORY_STRUCTURED, 1.5}, {"into a table", C::TASK_CATEGORY_STRUCTURED, 1}, {"schema", C::TASK_CATEGORY_STRUCTURED, 2.5},
    {"extract", C::TASK_CATEGORY_STRUCTURED, 2.5}, {"key-value", C::TASK_CATEGORY_STRUCTURED, 3},
    {"fields", C::TASK_CATEGORY_STRUCTURED, 2}, {"structured", C::TASK_CATEGORY_STRUCTURED, 3},
    {"columns", C::TASK_CATEGORY_STRUCTURED, 2.5}, {"parse", C::TASK_CATEGORY_STRUCTURED, 1},
    {"format as", C::TASK_CATEGORY_STRUCTURED, 2}, {"template", C::TASK_CATEGORY_STRUCTURED, 1.5},
    {"classify", C::TASK_CATEGORY_STRUCTURED, 2}, {"organize these", C::TASK_CATEGORY_STRUCTURED, 1.5},
    {"as a list", C::TASK_CATEGORY_STRUCTURED, 1}, {"config", C::TASK_CATEGORY_STRUCTURED, 1},
    {"提取", C::TASK_CATEGORY_STRUCTURED, 3}, {"表格", C::TASK_CATEGORY_STRUCTURED, 3},
    {"分类", C::TASK_CATEGORY_STRUCTURED, 2},
    // generic math vocabulary and other-language words for the same skills
    {"integer", C::TASK_CATEGORY_REASONING, 2}, {"integers", C::TASK_CATEGORY_REASONING, 2},
    {"prime", C::TASK_CATEGORY_REASONING, 1.5}, {"derivative", C::TASK_CATEGORY_REASONING, 2.5},
    {"integral", C::TASK_CATEGORY_REASONING, 2.5}, {"matrix", C::TASK_CATEGORY_REASONING, 1.5},
    {"theorem", C::TASK_CATEGORY_REASONING, 2.5}, {"compounded", C::TASK_CATEGORY_REASONING, 2},
    {"randomly", C::TASK_CATEGORY_REASONING, 1.5}, {"find the", C::TASK_CATEGORY_REASONING, 1},
    {"determine", C::TASK_CATEGORY_REASONING, 1}, {"sum of", C::TASK_CATEGORY_REASONING, 1.5},
    {"expected value", C::TASK_CATEGORY_REASONING, 2.5}, {"\\frac", C::TASK_CATEGORY_REASONING, 3},
    {"\\sqrt", C::TASK_CATEGORY_REASONING, 3}, {"方程", C::TASK_CATEGORY_REASONING, 2.5},
    {"求", C::TASK_CATEGORY_REASONING, 1}, {"概率", C::TASK_CATEGORY_REASONING, 2.5},
    {"in the style of", C::TASK_CATEGORY_CREATIVE, 2}, {"scene", C::TASK_CATEGORY_CREATIVE, 1.5},
    {"chapter", C::TASK_CATEGORY_CREATIVE, 1.5}, {"verse", C::TASK_CATEGORY_CREATIVE, 2},
    {"rap", C::TASK_CATEGORY_CREATIVE, 2}, {"screenplay", C::TASK_CATEGORY_CREATIVE, 3},
    {"narrative", C::TASK_CATEGORY_CREATIVE, 2}, {"tale", C::TASK_CATEGORY_CREATIVE, 2},
    {"fiction", C::TASK_CATEGORY_CREATIVE, 2.5}, {"protagonist", C::TASK_CATEGORY_CREATIVE, 2.5},
    {"rhyme", C::TASK_CATEGORY_CREATIVE, 2.5}, {"rhyming", C::TASK_CATEGORY_CREATIVE, 2.5},
    {"stanza", C::TASK_CATEGORY_CREATIVE, 3}, {"poema", C::TASK_CATEGORY_CREATIVE, 3},
    {"gedicht", C::TASK_CATEGORY_CREATIVE, 3}, {"poème", C::TASK_CATEGORY_CREATIVE, 3},
    {"стих", C::TASK_CATEGORY_CREATIVE, 3}, {"puisi", C::TASK_CATEGORY_CREATIVE, 3},
    {"번역", C::TASK_CATEGORY_TRANSLATION, 4}, {"翻訳", C::TASK_CATEGORY_TRANSLATION, 4},
    {"traduce", C::TASK_CATEGORY_TRANSLATION, 3}, {"traducir", C::TASK_CATEGORY_TRANSLATION, 3},
    {"traduire", C::TASK_CATEGORY_TRANSLATION, 3}, {"traduis", C::TASK_CATEGORY_TRANSLATION, 3},
    {"übersetze", C::TASK_CATEGORY_TRANSLATION, 3}, {"übersetzen", C::TASK_CATEGORY_TRANSLATION, 3},
    {"переведи", C::TASK_CATEGORY_TRANSLATION, 3}, {"перевод", C::TASK_CATEGORY_TRANSLATION, 3},
    {"terjemahkan", C::TASK_CATEGORY_TRANSLATION, 3},
    // the same three skills' verbs in more languages (a word list, not fitted to any prompt set)
    {"traduci", C::TASK_CATEGORY_TRANSLATION, 3}, {"traducimi", C::TASK_CATEGORY_TRANSLATION, 3},
    {"traduza", C::TASK_CATEGORY_TRANSLATION, 3}, {"traduzir", C::TASK_CATEGORY_TRANSLATION, 3},
    {"traduisez", C::TASK_CATEGORY_TRANSLATION, 3}, {"vertaal", C::TASK_CATEGORY_TRANSLATION, 3},
    {"vertalen", C::TASK_CATEGORY_TRANSLATION, 3}, {"przetłumacz", C::TASK_CATEGORY_TRANSLATION, 3},
    {"çevir", C::TASK_CATEGORY_TRANSLATION, 3}, {"dịch sang", C::TASK_CATEGORY_TRANSLATION, 3},
    {"ترجم", C::TASK_CATEGORY_TRANSLATION, 3}, {"अनुवाद", C::TASK_CATEGORY_TRANSLATION, 3},
    {"תרגם", C::TASK_CATEGORY_TRANSLATION, 3}, {"แปล", C::TASK_CATEGORY_TRANSLATION, 3},
    {"översätt", C::TASK_CATEGORY_TRANSLATION, 3}, {"käännä", C::TASK_CATEGORY_TRANSLATION, 3},
    {"fordítsd", C::TASK_CATEGORY_TRANSLATION, 3}, {"přelož", C::TASK_CATEGORY_TRANSLATION, 3},
    {"переклади", C::TASK_CATEGORY_TRANSLATION, 3}, {"переведите", C::TASK_CATEGORY_TRANSLATION, 3},
    {"riassumi", C::TASK_CATEGORY_SUMMARIZATION, 3}, {"riassunto", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"resuma", C::TASK_CATEGORY_SUMMARIZATION, 3}, {"resumo", C::TASK_CATEGORY_SUMMARIZATION, 2},
    {"resumen", C::TASK_CATEGORY_SUMMARIZATION, 2}, {"résumer", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"podsumuj", C::TASK_CATEGORY_SUMMARIZATION, 3}, {"streść", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"samenvatting", C::TASK_CATEGORY_SUMMARIZATION, 3}, {"özetle", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"tóm tắt", C::TASK_CATEGORY_SUMMARIZATION, 3}, {"要約", C::TASK_CATEGORY_SUMMARIZATION, 3.5},
    {"перескажи", C::TASK_CATEGORY_SUMMARIZATION, 3}, {"لخص", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"सार", C::TASK_CATEGORY_SUMMARIZATION, 3}, {"סכם", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"สรุป", C::TASK_CATEGORY_SUMMARIZATION, 3}, {"sammanfatta", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"tiivistä", C::TASK_CATEGORY_SUMMARIZATION, 3}, {"ringkas", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"poesia", C::TASK_CATEGORY_CREATIVE, 3}, {"poesía", C::TASK_CATEGORY_CREATIVE, 3},
    {"wiersz", C::TASK_CATEGORY_CREATIVE, 3}, {"şiir", C::TASK_CATEGORY_CREATIVE, 3},
    {"shairi", C::TASK_CATEGORY_CREATIVE, 3}, {"ποίημα", C::TASK_CATEGORY_CREATIVE, 3},
    {"कविता", C::TASK_CATEGORY_CREATIVE, 3}, {"قصيدة", C::TASK_CATEGORY_CREATIVE, 3},
    {"บทกวี", C::TASK_CATEGORY_CREATIVE, 3}, {"cuento", C::TASK_CATEGORY_CREATIVE, 2.5},
    {"racconto", C::TASK_CATEGORY_CREATIVE, 2.5},
    {"요약", C::TASK_CATEGORY_SUMMARIZATION, 3.5}, {"resumir", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"resume", C::TASK_CATEGORY_SUMMARIZATION, 2}, {"zusammenfass", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"résumé", C::TASK_CATEGORY_SUMMARIZATION, 2}, {"html", C::TASK_CATEGORY_CODE, 1.5},
    {"css", C::TASK_CATEGORY_CODE, 1.5}, {"flutter", C::TASK_CATEGORY_CODE, 2},
    {"什么", C::TASK_CATEGORY_FACTUAL, 1.2}, {"多少", C::TASK_CATEGORY_FACTUAL, 1},
    // general
    {"help me", C::TASK_CATEGORY_GENERAL, 1}, {"advice", C::TASK_CATEGORY_GENERAL, 2.5},
    {"tips", C::TASK_CATEGORY_GENERAL, 2.5}, {"recommend", C::TASK_CATEGORY_GENERAL, 2},
    {"suggest", C::TASK_CATEGORY_GENERAL, 1.2}, {"how do i", C::TASK_CATEGORY_GENERAL, 1},
    {"how can i", C::TASK_CATEGORY_GENERAL, 1.5}, {"plan my", C::TASK_CATEGORY_GENERAL, 2},
    {"should i", C::TASK_CATEGORY_GENERAL, 1.5}, {"what should i", C::TASK_CATEGORY_GENERAL, 1},
    {"how are you", C::TASK_CATEGORY_GENERAL, 2.5}, {"hello", C::TASK_CATEGORY_GENERAL, 1.5},
    {"hi", C::TASK_CATEGORY_GENERAL, 1.5}, {"thanks", C::TASK_CATEGORY_GENERAL, 2.5},
    {"thank you", C::TASK_CATEGORY_GENERAL, 2}, {"rewrite", C::TASK_CATEGORY_GENERAL, 1.5},
    {"professional", C::TASK_CATEGORY_GENERAL, 1}, {"polite", C::TASK_CATEGORY_GENERAL, 1.5},
    {"itinerary", C::TASK_CATEGORY_GENERAL, 2}, {"habits", C::TASK_CATEGORY_GENERAL, 1.5},
    {"routine", C::TASK_CATEGORY_GENERAL, 1}, {"organize my", C::TASK_CATEGORY_GENERAL, 2},
    {"pack for", C::TASK_CATEGORY_GENERAL, 2}, {"improve my", C::TASK_CATEGORY_GENERAL, 1.5},
    {"good way to", C::TASK_CATEGORY_GENERAL, 1.5}, {"best way to", C::TASK_CATEGORY_GENERAL, 1.5},
    {"keep my", C::TASK_CATEGORY_GENERAL, 1.5}, {"ask my", C::TASK_CATEGORY_GENERAL, 1.5},
    {"reply", C::TASK_CATEGORY_GENERAL, 1.5}, {"建议", C::TASK_CATEGORY_GENERAL, 2},
    {"改写", C::TASK_CATEGORY_GENERAL, 2}, {"润色", C::TASK_CATEGORY_GENERAL, 2},
};

constexpr const char* kNaturalLanguages[] = {
    "english", "french", "spanish", "german", "italian", "portuguese", "japanese", "chinese",
    "mandarin", "korean", "russian", "arabic", "hindi", "dutch", "swedish", "norwegian",
    "danish", "finnish", "polish", "turkish", "greek", "hebrew", "swahili", "vietnamese",
    "thai", "indonesian", "ukrainian", "czech", "latin", "英文", "英语", "中文", "日语", "法语"};

}  // namespace

// Occurrences of `phrase` in `lower` at word boundaries (for ASCII phrases).
int CountPhrase(absl::string_view lower, absl::string_view phrase) {
  const bool ascii = static_cast<unsigned char>(phrase.front()) < 0x80;
  int count = 0;
  for (size_t pos = lower.find(phrase); pos != absl::string_view::npos;
       pos = lower.find(phrase, pos + 1)) {
    if (ascii) {
      const bool left_ok =
          pos == 0 || !IsWordByte(lower[pos - 1]) || !IsWordByte(phrase.front());
      const size_t end = pos + phrase.size();
      const bool right_ok =
          end >= lower.size() || !IsWordByte(lower[end]) || !IsWordByte(phrase.back());
      if (!left_ok || !right_ok) continue;
    }
    ++count;
  }
  return count;
}

bool HasPhrase(absl::string_view lower, absl::string_view phrase) {
  return CountPhrase(lower, phrase) > 0;
}

// Splits `text` into what the client wrote as instructions and what it pasted or quoted:
// quoted spans are dropped, text after the first ": " goes to `payload`.
void SplitInstruction(absl::string_view text, std::string* instruction, std::string* payload) {
  std::string unquoted;
  unquoted.reserve(text.size());
  size_t copied = 0;  // text[copied, i) is still to be appended
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c != '"' && c != '`' && c != '\'') continue;
    const bool opens = c != '\'' || i == 0 ||
                       absl::string_view(" (:\n").find(text[i - 1]) != absl::string_view::npos;
    if (!opens) continue;
    size_t j = i + 1;
    for (; j < text.size(); ++j) {
      if (text[j] != c) continue;
      if (c != '\'' || j + 1 >= text.size() ||
          absl::string_view(" .,;:!?)\n").find(text[j + 1]) != absl::string_view::npos) {
        break;
      }
    }
    if (j < text.size()) {
      unquoted.append(text.data() + copied, i - copied);
      unquoted += ' ';
      i = j;
      copied = j + 1;
    }
  }
  unquoted.append(text.data() + copied, text.size() - copied);
  size_t colon = std::string::npos;
  for (size_t i = 0; i + 1 < unquoted.size(); ++i) {
    if (unquoted[i] == ':' && (unquoted[i + 1] == ' ' || unquoted[i + 1] == '\n')) {
      colon = i;
      break;
    }
  }
  if (colon == std::string::npos) {
    *instruction = unquoted;
    payload->clear();
  } else {
    *instruction = unquoted.substr(0, colon);
    *payload = unquoted.substr(colon + 1);
  }
}

// Distinct code-syntax markers in `text` (pasted code counts fully: it says what the request is
// about), at most three.
// `symbols_only` leaves out keywords that also occur in prose ("return the result").
int CodeSyntax(absl::string_view text, bool symbols_only) {
  // Symbols, then the keywords that also occur in prose.
  static constexpr absl::string_view kMarkers[] = {
      "()", "{", "};", "=>", "#include", "def ", "->", "::", "!=", "++", "```", "self.", "std::",
      "console.", "print(", "</", "import ", "return ", "const ", "var ", "let ", "public "};
  constexpr size_t kSymbols = 16;
  static_assert(std::size(kMarkers) <= 32, "markers are bits of a uint32_t");
  // One pass over the text, trying only the markers that start with the byte at hand.
  static const std::array<uint32_t, 256> kByFirst = [] {
    std::array<uint32_t, 256> by{};
    for (size_t m = 0; m < std::size(kMarkers); ++m) {
      by[static_cast<unsigned char>(kMarkers[m][0])] |= 1u << m;
    }
    return by;
  }();
  const uint32_t wanted = symbols_only ? (1u << kSymbols) - 1 : (1u << std::size(kMarkers)) - 1;
  uint32_t found = 0;
  int distinct = 0;  // popcount(found), kept by hand: without -mpopcnt each count is a call
  for (size_t i = 0; i < text.size(); ++i) {
    uint32_t candidates = kByFirst[static_cast<unsigned char>(text[i])] & wanted & ~found;
    while (candidates != 0) {
      const int m = __builtin_ctz(candidates);
      candidates &= candidates - 1;
      if (text.compare(i, kMarkers[m].size(), kMarkers[m]) != 0) continue;
      found |= 1u << m;
      if (++distinct >= 3) return 3;
    }
  }
  return distinct;
}

namespace {

// The word a match of `phrase` must have whole in the text (a match of a phrase starting with
// a word byte begins at a word boundary, CountPhrase); empty when there is no such rule.
absl::string_view LeadWord(absl::string_view phrase) {
  const unsigned char front = phrase.empty() ? 0 : static_cast<unsigned char>(phrase.front());
  if (front == 0 || front >= 0x80 || !IsWordByte(front)) return {};
  size_t k = 0;
  while (k < phrase.size() && IsWordByte(phrase[k])) ++k;
  return phrase.substr(0, k);
}

constexpr const char* kTranslationPrepositions[] = {"into ", "to ", "in ", "from "};
constexpr const char* kProgrammingLanguages[] = {
    "python", "rust", "c++", "c#", "java", "javascript", "typescript", "golang", "kotlin",
    "swift", "ruby", "php", "haskell", "scala", "go", "in c", "sql"};
constexpr const char* kTranslating[] = {"translate", "convert", "port", "translation"};

// A phrase the index is asked about, with the id of its lead word (-1: none) and whether it
// starts with a word no list has (then it is searched for the slow way).
struct Phrase {
  absl::string_view text;
  int lead = -1;
  bool unlisted_lead = false;
};

// Every lead word of every phrase the lexicon looks for (cues, language names, prepositions),
// numbered, in an open-addressing table built once: a text's words are looked up here, and only
// those that lead some phrase are kept.
class LeadWords {
 public:
  static const LeadWords& Get() {
    static const LeadWords* const kWords = new LeadWords();
    return *kWords;
  }
  // The id of `word`, or -1 when no phrase starts with it.
  int Find(absl::string_view word) const {
    for (size_t k = Hash(word) & kMask;; k = (k + 1) & kMask) {
      const int id = slots_[k] - 1;
      if (id < 0 || words_[id] == word) return id;
    }
  }
  int size() const { return static_cast<int>(words_.size()); }
  Phrase Of(absl::string_view phrase) const {
    const absl::string_view lead = LeadWord(phrase);
    const int id = lead.empty() ? -1 : Find(lead);
    return {phrase, id, !lead.empty() && id < 0};
  }
  // Each cue with its lead, in kCues order; the cues each lead word starts; those without one.
  const std::vector<Phrase>& cues() const { return cues_; }
  const std::vector<uint16_t>& cues_led_by(int id) const { return led_by_[id]; }
  // Those without a lead word that start with an ASCII byte ("\\frac"), and with a multi-byte
  // character (Chinese, Cyrillic, Arabic cues: a text without such characters skips them).
  const std::vector<uint16_t>& ascii_cues_without_lead() const { return without_lead_; }
  const std::vector<uint16_t>& multibyte_cues() const { return multibyte_; }
  const std::vector<Phrase>& natural() const { return natural_; }
  const std::vector<Phrase>& programming() const { return programming_; }
  const std::vector<Phrase>& translating() const { return translating_; }

 private:
  static constexpr size_t kMask = 2047;  // a power of two minus one, over twice the lead words
  // Every word of every text is hashed once: its length and its first and last eight bytes
  // (a word that differs only in the middle collides, and is told apart by comparing).
  static size_t Hash(absl::string_view w) {
    uint64_t head = 0, tail = 0;
    const size_t n = std::min<size_t>(w.size(), 8);
    std::memcpy(&head, w.data(), n);
    std::memcpy(&tail, w.data() + w.size() - n, n);
    const uint64_t h = (head * 0x9E3779B97F4A7C15ULL) ^ (tail * 0xC2B2AE3D27D4EB4FULL) ^ w.size();
    return static_cast<size_t>(h ^ (h >> 31));
  }
  LeadWords() : slots_(kMask + 1, 0) {
    for (const Cue& cue : kCues) Add(cue.phrase);
    for (const char* p : kNaturalLanguages) Add(p);
    for (const char* p : kProgrammingLanguages) Add(p);
    for (const char* p : kTranslating) Add(p);
    for (const char* p : kTranslationPrepositions) Add(p);
    led_by_.resize(words_.size());
    for (size_t i = 0; i < std::size(kCues); ++i) {
      cues_.push_back(Of(kCues[i].phrase));
      const bool multibyte = static_cast<unsigned char>(kCues[i].phrase[0]) >= 0x80;
      (cues_.back().lead >= 0 ? led_by_[cues_.back().lead] : multibyte ? multibyte_ : without_lead_)
          .push_back(static_cast<uint16_t>(i));
    }
    for (const char* p : kNaturalLanguages) natural_.push_back(Of(p));
    for (const char* p : kProgrammingLanguages) programming_.push_back(Of(p));
    for (const char* p : kTranslating) translating_.push_back(Of(p));
  }
  void Add(absl::string_view phrase) {
    const absl::string_view lead = LeadWord(phrase);
    if (lead.empty() || Find(lead) >= 0) return;
    size_t k = Hash(lead) & kMask;
    while (slots_[k] != 0) k = (k + 1) & kMask;
    words_.push_back(lead);
    slots_[k] = static_cast<uint16_t>(words_.size());
  }
  std::vector<absl::string_view> words_;
  std::vector<uint16_t> slots_;  // id + 1; 0 is empty
  std::vector<Phrase> cues_, natural_, programming_, translating_;
  std::vector<std::vector<uint16_t>> led_by_;
  std::vector<uint16_t> without_lead_, multibyte_;
};
static_assert(std::size(kCues) <= 65535, "cue indices are uint16_t");

// A WordIndex's tables, kept by each thread from one text to the next: allocating and filling
// them for every text (a slot per lead word, one per multi-byte key) cost more than reading a
// short prompt. An index resets only the entries its own text set.
struct WordIndexTables {
  static constexpr int kMultibyteBits = 9;
  std::vector<int32_t> last;            // by lead word id: its last start (index into starts), or -1
  std::vector<uint16_t> present;        // the lead words the text has, in first-seen order
  std::vector<uint32_t> starts;         // where each lead word of the text starts
  std::vector<int32_t> next;            // the previous start of the same word, or -1
  std::vector<int32_t> multibyte_head;  // by MultibyteKey: the last start there, or -1
  std::vector<uint32_t> multibyte_starts;  // where each multi-byte character starts
  std::vector<int32_t> multibyte_next;     // the previous start with the same key, or -1
  bool in_use = false;
};

// Where a text's lead words start, to skip looking for a phrase whose first word the text lacks:
// one table lookup per word of the text instead of ~160 substring searches per prompt.
class WordIndex {
 public:
  explicit WordIndex(absl::string_view lower) : lower_(lower), t_(Tables()) {
    const LeadWords& leads = LeadWords::Get();
    if (t_.last.empty()) t_.last.assign(leads.size(), -1);
    for (size_t i = 0; i < lower.size();) {
      if (!IsWordByte(lower[i])) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < lower.size() && IsWordByte(lower[j])) ++j;
      for (size_t k = i; k < j; ++k) {
        if (static_cast<unsigned char>(lower[k]) >= 0xC0) AddMultibyte(k);
      }
      const int id = leads.Find(lower.substr(i, j - i));
      if (id >= 0) {
        // Each lead word's starts form a chain through next (no allocation per word).
        if (t_.last[id] < 0) t_.present.push_back(static_cast<uint16_t>(id));
        t_.starts.push_back(static_cast<uint32_t>(i));
        t_.next.push_back(t_.last[id]);
        t_.last[id] = static_cast<int32_t>(t_.starts.size() - 1);
      }
      i = j;
    }
  }
  ~WordIndex() {
    for (uint16_t id : t_.present) t_.last[id] = -1;
    for (uint32_t at : t_.multibyte_starts) t_.multibyte_head[MultibyteKey(lower_, at)] = -1;
    t_.present.clear();
    t_.starts.clear();
    t_.next.clear();
    t_.multibyte_starts.clear();
    t_.multibyte_next.clear();
    if (&t_ == &own_) return;
    t_.in_use = false;
  }
  WordIndex(const WordIndex&) = delete;
  WordIndex& operator=(const WordIndex&) = delete;

  // The lead words the text has, in the order they first appear.
  const std::vector<uint16_t>& present() const { return t_.present; }

  // CountPhrase(text, phrase), looking only where the phrase's leading word starts, up to
  // `limit` (a cue counts at most twice; Has needs one).
  int Count(const Phrase& phrase, int limit) const {
    const absl::string_view text = phrase.text;
    if (phrase.lead < 0) {
      if (phrase.unlisted_lead) return std::min(CountPhrase(lower_, text), limit);
      if (static_cast<unsigned char>(text.front()) >= 0xC0) return CountMultibyte(text, limit);
      return std::min(CountPhrase(lower_, text), limit);
    }
    int count = 0;
    for (int32_t k = t_.last[phrase.lead]; k >= 0; k = t_.next[k]) {
      const uint32_t pos = t_.starts[k];
      if (lower_.substr(pos, text.size()) != text) continue;
      const size_t end = pos + text.size();
      if (end < lower_.size() && IsWordByte(lower_[end]) && IsWordByte(text.back())) continue;
      if (++count >= limit) break;
    }
    return count;
  }
  bool Has(absl::string_view phrase) const { return Count(LeadWords::Get().Of(phrase), 1) > 0; }
  bool HasAny(const std::vector<Phrase>& phrases) const {
    for (const Phrase& p : phrases) {
      if (Count(p, 1) > 0) return true;
    }
    return false;
  }

  bool has_multibyte() const { return !t_.multibyte_starts.empty(); }

 private:
  // This thread's tables, or (should an index be made while another is alive) this one's own.
  WordIndexTables& Tables() {
    thread_local WordIndexTables tables;
    if (tables.in_use) return own_;
    tables.in_use = true;
    return tables;
  }

  // Non-ASCII phrases (Chinese, Japanese, Cyrillic cues) have no leading word: a text in those
  // scripts is one run of word bytes. They are found through the characters of the text instead:
  // the starts of multi-byte characters chained by a hash of their first three bytes, so a cue
  // is compared only where its first character is (string_view::find would stop at every
  // character of a Chinese text sharing the cue's first byte).
  static constexpr int kMultibyteBits = WordIndexTables::kMultibyteBits;
  static uint32_t MultibyteKey(absl::string_view s, size_t at) {
    uint32_t key = 0;
    for (size_t k = at; k < at + 3; ++k) key = key << 8 | (k < s.size() ? static_cast<unsigned char>(s[k]) : 0);
    return (key * 0x9E3779B1u) >> (32 - kMultibyteBits);
  }
  void AddMultibyte(size_t at) {
    if (t_.multibyte_head.empty()) t_.multibyte_head.assign(size_t{1} << kMultibyteBits, -1);
    int32_t& head = t_.multibyte_head[MultibyteKey(lower_, at)];
    t_.multibyte_starts.push_back(static_cast<uint32_t>(at));
    t_.multibyte_next.push_back(head);
    head = static_cast<int32_t>(t_.multibyte_starts.size() - 1);
  }
  // CountPhrase(text, phrase) for a phrase that starts with a multi-byte character (no word
  // boundaries are checked for those, as there).
  int CountMultibyte(absl::string_view phrase, int limit) const {
    if (t_.multibyte_starts.empty()) return 0;
    int count = 0;
    for (int32_t k = t_.multibyte_head[MultibyteKey(phrase, 0)]; k >= 0 && count < limit;
         k = t_.multibyte_next[k]) {
      count += lower_.substr(t_.multibyte_starts[k], phrase.size()) == phrase;
    }
    return count;
  }

  absl::string_view lower_;
  WordIndexTables own_;  // used only when this thread's tables are taken (declared before t_)
  WordIndexTables& t_;
};

// The cues that can match `index`'s text, in kCues order: those whose leading word the text has
// and those without a leading word.
std::vector<uint16_t> CandidateCues(const WordIndex& index) {
  const LeadWords& leads = LeadWords::Get();
  std::vector<uint16_t> out = leads.ascii_cues_without_lead();
  if (index.has_multibyte()) {
    out.insert(out.end(), leads.multibyte_cues().begin(), leads.multibyte_cues().end());
  }
  for (uint16_t id : index.present()) {
    const std::vector<uint16_t>& led = leads.cues_led_by(id);
    out.insert(out.end(), led.begin(), led.end());
  }
  // kCues order, so the scores add up in the same order as a scan of every cue.
  std::sort(out.begin(), out.end());
  return out;
}

std::array<double, 9> ScoreLower(absl::string_view lower) {
  std::array<double, 9> s{};
  const WordIndex index(lower);
  const LeadWords& leads = LeadWords::Get();
  for (uint16_t i : CandidateCues(index)) {
    const int n = index.Count(leads.cues()[i], 2);
    if (n > 0) s[kCues[i].category] += kCues[i].weight * std::min(n, 2);
  }
  const bool programming = index.HasAny(leads.programming());
  const bool natural = index.HasAny(leads.natural());
  const bool translating = index.HasAny(leads.translating());
  if (translating && programming && !natural) {
    // "Translate this Python code to Rust" is code, not translation.
    s[C::TASK_CATEGORY_CODE] += 3;
    s[C::TASK_CATEGORY_TRANSLATION] = 0;
  } else if (natural) {
    for (const Phrase& lang : leads.natural()) {
      if (index.Count(lang, 1) == 0) continue;  // "into <lang>" needs the language itself
      for (const char* prep : kTranslationPrepositions) {
        if (index.Has(absl::StrCat(prep, lang.text))) {
          s[C::TASK_CATEGORY_TRANSLATION] += 2;
          break;
        }
      }
    }
  }
  // Arithmetic.
  for (size_t i = 1; i + 1 < lower.size(); ++i) {
    const char c = lower[i];
    if ((c == '%' && std::isdigit(static_cast<unsigned char>(lower[i - 1]))) ||
        ((c == '+' || c == '=' || c == '*' || c == '/') &&
         (std::isdigit(static_cast<unsigned char>(lower[i - 1])) ||
          std::isdigit(static_cast<unsigned char>(lower[i + 1])) ||
          (i >= 2 && std::isdigit(static_cast<unsigned char>(lower[i - 2]))) ||
          (i + 2 < lower.size() && std::isdigit(static_cast<unsigned char>(lower[i + 2])))))) {
      s[C::TASK_CATEGORY_REASONING] += 1.5;
      break;
    }
  }
  return s;
}

// Capitals lowered (LowerCapitals), and the vowel signs and other marks that Arabic and Hebrew
// writers add or leave out (U+064B-065F, U+0670; U+0591-05BD, U+05BF, U+05C1-05C2, U+05C4-05C5,
// U+05C7) dropped, so "لخّص" finds the cue "لخص".
std::string LowerForCues(absl::string_view text) {
  std::string out;
  if (text.find_first_of("\xD6\xD7\xD9") == absl::string_view::npos) {
    out.assign(text.data(), text.size());  // no Arabic or Hebrew: the common case
    LowerCapitals(out.data(), out.size());
    return out;
  }
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if ((c == 0xD9 || c == 0xD6 || c == 0xD7) && i + 1 < text.size()) {
      const unsigned char d = static_cast<unsigned char>(text[i + 1]);
      const bool mark = (c == 0xD9 && ((d >= 0x8B && d <= 0x9F) || d == 0xB0)) ||
                        (c == 0xD6 && ((d >= 0x91 && d <= 0xBD) || d == 0xBF)) ||
                        (c == 0xD7 && (d == 0x81 || d == 0x82 || d == 0x84 || d == 0x85 || d == 0x87));
      if (mark) {
        ++i;
        continue;
      }
    }
    out += static_cast<char>(c);
  }
  LowerCapitals(out.data(), out.size());
  return out;
}

}  // namespace

void LowerCapitals(char* bytes, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (c < 0x80) {
      bytes[i] = absl::ascii_tolower(c);
      continue;
    }
    if (i + 1 >= n || (c != 0xC3 && c != 0xD0)) continue;
    const unsigned char d = static_cast<unsigned char>(bytes[i + 1]);
    if (c == 0xC3 && d >= 0x80 && d <= 0x9E && d != 0x97) {  // À-Þ but ×
      bytes[i + 1] = static_cast<char>(d + 0x20);
    } else if (c == 0xD0 && d >= 0x90 && d <= 0x9F) {  // А-П
      bytes[i + 1] = static_cast<char>(d + 0x20);
    } else if (c == 0xD0 && d >= 0xA0 && d <= 0xAF) {  // Р-Я
      bytes[i] = static_cast<char>(0xD1);
      bytes[i + 1] = static_cast<char>(d - 0x20);
    } else if (c == 0xD0 && d == 0x81) {  // Ё
      bytes[i] = static_cast<char>(0xD1);
      bytes[i + 1] = static_cast<char>(0x91);
    }
    ++i;
  }
}

std::array<double, 9> Score(const std::string& whole) {
  const std::string text = ReadWindow(whole);  // bounded cost; the same window the model reads
  std::string instruction, payload;
  SplitInstruction(text, &instruction, &payload);
  std::array<double, 9> s = ScoreLower(LowerForCues(instruction));
  s[C::TASK_CATEGORY_CODE] += 1.5 * CodeSyntax(text);
  if (!payload.empty()) {
    std::array<double, 9> p = ScoreLower(LowerForCues(payload));
    for (C c : kAllCategories) s[c] += 0.3 * p[c];
  }
  return s;
}

}  // namespace loom::lexicon
