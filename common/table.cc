#include "common/table.h"

#include <algorithm>

#include "absl/strings/str_replace.h"

namespace loom {

std::string FormatTextTable(const Row& header, const std::vector<Row>& rows) {
  std::vector<size_t> width(header.size(), 0);
  auto measure = [&](const Row& row) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  };
  measure(header);
  for (const Row& row : rows) measure(row);
  std::string out;
  auto emit = [&](const Row& row) {
    for (size_t i = 0; i < width.size(); ++i) {
      const std::string cell = i < row.size() ? row[i] : "";
      out += cell;
      if (i + 1 < width.size()) out += std::string(width[i] - cell.size() + 2, ' ');
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    out += '\n';
  };
  emit(header);
  Row rule;
  for (size_t w : width) rule.push_back(std::string(w, '-'));
  emit(rule);
  for (const Row& row : rows) emit(row);
  return out;
}

std::string FormatCsv(const Row& header, const std::vector<Row>& rows) {
  std::string out;
  auto emit = [&](const Row& row) {
    for (size_t i = 0; i < row.size(); ++i) {
      if (i) out += ',';
      const std::string& cell = row[i];
      if (cell.find_first_of(",\"\n\r") != std::string::npos) {
        out += '"' + absl::StrReplaceAll(cell, {{"\"", "\"\""}}) + '"';
      } else {
        out += cell;
      }
    }
    out += '\n';
  };
  emit(header);
  for (const Row& row : rows) emit(row);
  return out;
}

}  // namespace loom
