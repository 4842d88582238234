// File: common/table.h
// Plain-text tables and CSV for the CLIs.
#ifndef LOOM_COMMON_TABLE_H_
#define LOOM_COMMON_TABLE_H_

#include <string>
#include <vector>

namespace loom {

using Row = std::vector<std::string>;

// Columns padded to their widest cell, a dashed rule under the header.
std::string FormatTextTable(const Row& header, const std::vector<Row>& rows);

// RFC 4180 CSV: cells with commas, quotes or newlines are quoted.
std::string FormatCsv(const Row& header, const std::vector<Row>& rows);

}  // namespace loom

#endif  // LOOM_COMMON_TABLE_H_
