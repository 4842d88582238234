// File: common/reflection_v1.cc
#include "common/reflection_v1.h"

#include <algorithm>
#include <utility>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>

namespace loom {

namespace v1r = grpc::reflection::v1;
using google::protobuf::DescriptorPool;
using google::protobuf::FileDescriptor;

namespace {

void Error(v1r::ServerReflectionResponse* response, grpc::StatusCode code, const std::string& message) {
  response->mutable_error_response()->set_error_code(code);
  response->mutable_error_response()->set_error_message(message);
}

// `file` and its dependencies, each once per stream (the file asked for first).
void AddFiles(const FileDescriptor* file, std::vector<std::string>* sent,
              v1r::FileDescriptorResponse* out, bool asked) {
  const bool already = std::find(sent->begin(), sent->end(), file->name()) != sent->end();
  if (already && !asked) return;
  if (!already) sent->push_back(file->name());
  google::protobuf::FileDescriptorProto proto;
  file->CopyTo(&proto);
  out->add_file_descriptor_proto(proto.SerializeAsString());
  for (int i = 0; i < file->dependency_count(); ++i) {
    AddFiles(file->dependency(i), sent, out, false);
  }
}

}  // namespace

ReflectionV1Service::ReflectionV1Service(std::vector<std::string> services)
    : services_(std::move(services)) {
  for (const char* s : {"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                        "grpc.reflection.v1alpha.ServerReflection"}) {
    if (std::find(services_.begin(), services_.end(), s) == services_.end()) services_.push_back(s);
  }
}

v1r::ServerReflectionResponse ReflectionV1Service::Answer(const v1r::ServerReflectionRequest& request,
                                                          std::vector<std::string>* sent) const {
  const DescriptorPool* pool = DescriptorPool::generated_pool();
  v1r::ServerReflectionResponse response;
  response.set_valid_host(request.host());
  *response.mutable_original_request() = request;
  // The file (and its imports), or NOT_FOUND naming what was looked for.
  auto send_file = [&](const FileDescriptor* file, const std::string& what) {
    if (file == nullptr) {
      Error(&response, grpc::StatusCode::NOT_FOUND, what + " not found");
    } else {
      AddFiles(file, sent, response.mutable_file_descriptor_response(), true);
    }
  };
  switch (request.message_request_case()) {
    case v1r::ServerReflectionRequest::kListServices:
      for (const std::string& name : services_) {
        response.mutable_list_services_response()->add_service()->set_name(name);
      }
      break;
    case v1r::ServerReflectionRequest::kFileByFilename:
      send_file(pool->FindFileByName(request.file_by_filename()),
                "file " + request.file_by_filename());
      break;
    case v1r::ServerReflectionRequest::kFileContainingSymbol:
      send_file(pool->FindFileContainingSymbol(request.file_containing_symbol()),
                "symbol " + request.file_containing_symbol());
      break;
    case v1r::ServerReflectionRequest::kFileContainingExtension: {
      const auto& ask = request.file_containing_extension();
      const google::protobuf::Descriptor* type = pool->FindMessageTypeByName(ask.containing_type());
      const google::protobuf::FieldDescriptor* ext =
          type ? pool->FindExtensionByNumber(type, ask.extension_number()) : nullptr;
      send_file(ext ? ext->file() : nullptr, "extension " + std::to_string(ask.extension_number()) +
                                                 " of " + ask.containing_type());
      break;
    }
    case v1r::ServerReflectionRequest::kAllExtensionNumbersOfType: {
      const google::protobuf::Descriptor* type =
          pool->FindMessageTypeByName(request.all_extension_numbers_of_type());
      if (type == nullptr) {
        Error(&response, grpc::StatusCode::NOT_FOUND, "type not found: " + request.all_extension_numbers_of_type());
        break;
      }
      std::vector<const google::protobuf::FieldDescriptor*> extensions;
      pool->FindAllExtensions(type, &extensions);
      auto* out = response.mutable_all_extension_numbers_response();
      out->set_base_type_name(type->full_name());
      for (const auto* e : extensions) out->add_extension_number(e->number());
      break;
    }
    default:
      Error(&response, grpc::StatusCode::INVALID_ARGUMENT, "the request names nothing to reflect on");
  }
  return response;
}

grpc::Status ReflectionV1Service::ServerReflectionInfo(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1r::ServerReflectionResponse, v1r::ServerReflectionRequest>* stream) {
  std::vector<std::string> sent;
  v1r::ServerReflectionRequest request;
  while (!context->IsCancelled() && stream->Read(&request)) {
    if (!stream->Write(Answer(request, &sent))) break;
  }
  return grpc::Status::OK;
}

}  // namespace loom
