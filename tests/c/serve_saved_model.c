/* Scores movie lists with a tfrank SavedModel through the TensorFlow C API, the way TF Serving loads it.
 *
 * Loads the SavedModel with tag "serve" via TF_LoadSessionFromSavedModel (which restores the variables and runs the
 * init op that fills the lookup tables), feeds int64 user ids and movie ids of the given shapes to the signature's
 * input tensors and prints the float scores, one per line, row-major. Any shapes are fed as given, as TF Serving
 * does, so that the export's own input checks can be tested; a failed run prints TensorFlow's message and exits 1.
 *
 * Usage:
 *   serve_saved_model EXPORT_DIR USER_TENSOR MOVIE_TENSOR SCORES_TENSOR USER_SHAPE MOVIE_SHAPE USER_IDS... MOVIE_IDS...
 *   serve_saved_model --strings EXPORT_DIR INPUT_TENSOR SCORES_TENSOR RECORDS_FILE
 * Shapes are comma-separated dimensions, e.g. 2 and 2,5 for user ids [2] and movie ids [2, 5]. Tensor names are
 * "operation:index" as written in the signature def, e.g. serving_default_user_id:0. With --strings the one input is
 * a string tensor [n] of the n records in RECORDS_FILE, each a 4-byte little-endian length and that many bytes (for
 * example serialized ExampleListWithContext protos, as a TF Ranking client sends them).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensorflow/c/c_api.h"
#include "tensorflow/c/tf_tstring.h"

static void die_if_failed(TF_Status* status, const char* what) {
  if (TF_GetCode(status) != TF_OK) {
    fprintf(stderr, "%s failed: %s\n", what, TF_Message(status));
    exit(1);
  }
}

/* Splits "name:index" into the graph operation and output index. */
static TF_Output find_output(TF_Graph* graph, const char* tensor_name) {
  char op_name[512];
  int index = 0;
  const char* colon = strrchr(tensor_name, ':');
  size_t length = colon ? (size_t)(colon - tensor_name) : strlen(tensor_name);
  if (length >= sizeof(op_name)) {
    fprintf(stderr, "tensor name too long: %s\n", tensor_name);
    exit(2);
  }
  memcpy(op_name, tensor_name, length);
  op_name[length] = '\0';
  if (colon) index = atoi(colon + 1);
  TF_Operation* operation = TF_GraphOperationByName(graph, op_name);
  if (operation == NULL) {
    fprintf(stderr, "no operation %s in the graph (from tensor %s)\n", op_name, tensor_name);
    exit(1);
  }
  TF_Output output = {operation, index};
  return output;
}

#define MAX_RANK 8

/* Parses "d0,d1,..." into dims; returns the rank. */
static int parse_shape(const char* text, int64_t* dims) {
  int rank = 0;
  const char* cursor = text;
  while (*cursor != '\0') {
    if (rank == MAX_RANK) {
      fprintf(stderr, "shape %s has more than %d dimensions\n", text, MAX_RANK);
      exit(2);
    }
    char* end = NULL;
    long long dim = strtoll(cursor, &end, 10);
    if (end == cursor || dim < 0 || (*end != ',' && *end != '\0')) {
      fprintf(stderr, "bad shape %s: expected comma-separated sizes, e.g. 2,5\n", text);
      exit(2);
    }
    dims[rank++] = dim;
    cursor = (*end == ',') ? end + 1 : end;
  }
  return rank;
}

static int64_t num_elements(const int64_t* dims, int rank) {
  int64_t count = 1;
  for (int i = 0; i < rank; ++i) count *= dims[i];
  return count;
}

static TF_Tensor* int64_tensor(const int64_t* dims, int num_dims, char** values, int64_t count) {
  TF_Tensor* tensor = TF_AllocateTensor(TF_INT64, dims, num_dims, (size_t)count * sizeof(int64_t));
  int64_t* data = (int64_t*)TF_TensorData(tensor);
  for (int64_t i = 0; i < count; ++i) data[i] = strtoll(values[i], NULL, 10);
  return tensor;
}

/* Reads RECORDS_FILE into a string tensor [n]; exits 2 on a malformed file. */
static TF_Tensor* string_tensor(const char* path) {
  FILE* file = fopen(path, "rb");
  if (file == NULL) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(2);
  }
  char* records[1024];
  uint32_t lengths[1024];
  int64_t count = 0;
  unsigned char header[4];
  while (fread(header, 1, 4, file) == 4) {
    if (count == 1024) {
      fprintf(stderr, "%s holds more than 1024 records\n", path);
      exit(2);
    }
    lengths[count] = (uint32_t)header[0] | (uint32_t)header[1] << 8 | (uint32_t)header[2] << 16 |
                     (uint32_t)header[3] << 24;
    records[count] = malloc(lengths[count] + 1);
    if (fread(records[count], 1, lengths[count], file) != lengths[count]) {
      fprintf(stderr, "%s: record %lld is truncated\n", path, (long long)count);
      exit(2);
    }
    ++count;
  }
  fclose(file);
  int64_t dims[1] = {count};
  TF_Tensor* tensor = TF_AllocateTensor(TF_STRING, dims, 1, (size_t)count * sizeof(TF_TString));
  TF_TString* strings = (TF_TString*)TF_TensorData(tensor);
  for (int64_t i = 0; i < count; ++i) {
    TF_TString_Init(&strings[i]);
    TF_TString_Copy(&strings[i], records[i], lengths[i]);
    free(records[i]);
  }
  return tensor;
}

/* Loads EXPORT_DIR, runs SCORES_TENSOR on the inputs and prints the float scores, one per line; returns the status. */
static int serve(const char* export_dir, const char** input_names, TF_Tensor** input_values, int num_inputs,
                 const char* scores_name) {
  TF_Status* status = TF_NewStatus();
  TF_Graph* graph = TF_NewGraph();
  TF_SessionOptions* session_options = TF_NewSessionOptions();
  const char* tags[] = {"serve"};
  TF_Session* session =
      TF_LoadSessionFromSavedModel(session_options, NULL, export_dir, tags, 1, graph, NULL, status);
  die_if_failed(status, "TF_LoadSessionFromSavedModel");

  TF_Output inputs[2];
  for (int i = 0; i < num_inputs; ++i) inputs[i] = find_output(graph, input_names[i]);
  TF_Output outputs[1] = {find_output(graph, scores_name)};
  TF_Tensor* output_values[1] = {NULL};

  TF_SessionRun(session, NULL, inputs, input_values, num_inputs, outputs, output_values, 1, NULL, 0, NULL, status);
  die_if_failed(status, "TF_SessionRun");

  if (TF_TensorType(output_values[0]) != TF_FLOAT) {
    fprintf(stderr, "scores have dtype %d, expected TF_FLOAT\n", (int)TF_TensorType(output_values[0]));
    return 1;
  }
  const float* scores = (const float*)TF_TensorData(output_values[0]);
  int64_t num_scores = (int64_t)(TF_TensorByteSize(output_values[0]) / sizeof(float));
  for (int64_t i = 0; i < num_scores; ++i) printf("%.9g\n", scores[i]);

  TF_DeleteTensor(output_values[0]);
  TF_CloseSession(session, status);
  die_if_failed(status, "TF_CloseSession");
  TF_DeleteSession(session, status);
  TF_DeleteSessionOptions(session_options);
  TF_DeleteGraph(graph);
  TF_DeleteStatus(status);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 6 && strcmp(argv[1], "--strings") == 0) {
    const char* input_names[1] = {argv[3]};
    TF_Tensor* input_values[1] = {string_tensor(argv[5])};
    return serve(argv[2], input_names, input_values, 1, argv[4]);
  }
  if (argc < 7) {
    fprintf(stderr,
            "usage: %s EXPORT_DIR USER_TENSOR MOVIE_TENSOR SCORES_TENSOR USER_SHAPE MOVIE_SHAPE "
            "USER_IDS... MOVIE_IDS...\n   or: %s --strings EXPORT_DIR INPUT_TENSOR SCORES_TENSOR RECORDS_FILE\n",
            argv[0], argv[0]);
    return 2;
  }
  int64_t user_dims[MAX_RANK], movie_dims[MAX_RANK];
  int user_rank = parse_shape(argv[5], user_dims);
  int movie_rank = parse_shape(argv[6], movie_dims);
  int64_t num_users = num_elements(user_dims, user_rank);
  int64_t num_movies = num_elements(movie_dims, movie_rank);
  if (argc != 7 + num_users + num_movies) {
    fprintf(stderr, "expected %lld user ids and %lld movie ids, got %d values\n", (long long)num_users,
            (long long)num_movies, argc - 7);
    return 2;
  }
  const char* input_names[2] = {argv[2], argv[3]};
  TF_Tensor* input_values[2] = {int64_tensor(user_dims, user_rank, argv + 7, num_users),
                                int64_tensor(movie_dims, movie_rank, argv + 7 + num_users, num_movies)};
  return serve(argv[1], input_names, input_values, 2, argv[4]);
}
