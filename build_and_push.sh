#!/usr/bin/env bash
# Build the mfrec image for linux/amd64, push it to Amazon ECR and print the image URI.
# Progress goes to stderr; stdout is only the URI, so `uri=$(./build_and_push.sh)` works.
set -euo pipefail

prog="$(basename "$0")"

usage() {
    cat <<EOF
Usage: $prog [-h] [IMAGE_NAME [TAG]]

Build the mfrec Docker image (linux/amd64), push it to Amazon ECR in your account and print the
image URI, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/mfrec:latest.

  IMAGE_NAME  ECR repository name (default: mfrec); created if it does not exist
  TAG         image tag (default: latest)
  -h, --help  show this message

Needs Docker (running) and the AWS CLI (v2, or v1 >= 1.17.10) with credentials. The account
comes from 'aws sts get-caller-identity'; the region from AWS_REGION, else AWS_DEFAULT_REGION,
else 'aws configure get region'.
EOF
}

die() {
    echo "$prog: error: $*" >&2
    exit 1
}

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option '$1'" ;;
esac
[ $# -le 2 ] || { usage >&2; die "too many arguments"; }
image="${1:-mfrec}"
tag="${2:-latest}"
[[ "$image" =~ ^[a-z0-9]+([._/-][a-z0-9]+)*$ ]] \
    || die "'$image' is not a valid ECR repository name: use lower-case letters, digits and . _ - /"
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] \
    || die "'$tag' is not a valid image tag: use letters, digits, _ . - (at most 128 characters)"

command -v aws >/dev/null 2>&1 \
    || die "the AWS CLI ('aws') is not installed or not on PATH; install AWS CLI v2 (https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html)"
command -v docker >/dev/null 2>&1 \
    || die "Docker ('docker') is not installed or not on PATH; install Docker Engine or Docker Desktop"
docker info >/dev/null 2>&1 \
    || die "cannot reach the Docker engine ('docker info' failed); start Docker (or the docker service) and check that your user may use it"

if ! account="$(aws sts get-caller-identity --query Account --output text 2>&1)"; then
    die "no usable AWS credentials ('aws sts get-caller-identity' failed: ${account}); run 'aws configure' or 'aws sso login', or set AWS_PROFILE"
fi
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region 2>/dev/null || true)}}"
[ -n "$region" ] \
    || die "no AWS region configured; set AWS_REGION (e.g. export AWS_REGION=eu-west-1) or run 'aws configure set region eu-west-1'"

registry="${account}.dkr.ecr.${region}.amazonaws.com"
uri="${registry}/${image}:${tag}"
cd "$(dirname "$0")"

echo "building ${image}:${tag} for linux/amd64 ..." >&2
docker build --platform linux/amd64 -t "${image}:${tag}" . >&2

if ! out="$(aws ecr describe-repositories --repository-names "$image" --region "$region" 2>&1)"; then
    case "$out" in
        *RepositoryNotFoundException*)
            echo "creating ECR repository ${image} in ${region} ..." >&2
            aws ecr create-repository --repository-name "$image" --region "$region" >/dev/null ;;
        *) die "cannot look up ECR repository '${image}' in ${region}: ${out}" ;;
    esac
fi

aws ecr get-login-password --region "$region" \
    | docker login --username AWS --password-stdin "$registry" >&2 \
    || die "docker login to ${registry} failed; check that your AWS identity may use ECR (ecr:GetAuthorizationToken)"

docker tag "${image}:${tag}" "$uri"
echo "pushing ${uri} ..." >&2
docker push "$uri" >&2
echo "$uri"
