# The cluster the Helm release runs on: a private control plane with its secrets encrypted,
# a CPU node group that autoscales with the run pods, and a GPU node group for the model tier
# that scales from zero (tainted, so only pods that tolerate `nvidia.com/gpu` land on it:
# deployments/k8s gives the model-tier steps that toleration and a GPU limit).

data "aws_partition" "current" {}

module "cluster_key" {
  source      = "../kms_key"
  description = "${var.name}: EKS secrets encryption"
  region      = var.region
}

data "aws_iam_policy_document" "cluster_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["eks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "cluster" {
  name               = "${var.name}-eks-cluster"
  assume_role_policy = data.aws_iam_policy_document.cluster_assume.json
}

resource "aws_iam_role_policy_attachment" "cluster" {
  role       = aws_iam_role.cluster.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonEKSClusterPolicy"
}

resource "aws_eks_cluster" "this" {
  name     = var.name
  role_arn = aws_iam_role.cluster.arn
  version  = var.kubernetes_version

  vpc_config {
    subnet_ids              = var.private_subnet_ids
    endpoint_private_access = true
    endpoint_public_access  = false
  }

  encryption_config {
    resources = ["secrets"]
    provider {
      key_arn = module.cluster_key.arn
    }
  }

  enabled_cluster_log_types = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

  depends_on = [aws_iam_role_policy_attachment.cluster]
}

data "tls_certificate" "oidc" {
  url = aws_eks_cluster.this.identity[0].oidc[0].issuer
}

# IRSA: the workload roles (modules/iam) trust this provider for their service accounts.
# The API's NetworkPolicy (deployments/k8s/manifests/networkpolicy.yaml) admits only the
# ingress controller, and the API trusts X-Forwarded-For because of it: EKS enforces a
# NetworkPolicy only where the VPC CNI is asked to.
resource "aws_eks_addon" "vpc_cni" {
  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = "vpc-cni"
  resolve_conflicts_on_update = "OVERWRITE"
  configuration_values        = jsonencode({ enableNetworkPolicy = "true" })
}

resource "aws_iam_openid_connect_provider" "this" {
  url             = aws_eks_cluster.this.identity[0].oidc[0].issuer
  client_id_list  = ["sts.amazonaws.com"]
  thumbprint_list = [data.tls_certificate.oidc.certificates[0].sha1_fingerprint]
}

data "aws_iam_policy_document" "node_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  name               = "${var.name}-eks-node"
  assume_role_policy = data.aws_iam_policy_document.node_assume.json
}

resource "aws_iam_role_policy_attachment" "node" {
  for_each = toset([
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
  ])
  role       = aws_iam_role.node.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/${each.value}"
}

resource "aws_eks_node_group" "cpu" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "${var.name}-cpu"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = var.private_subnet_ids
  instance_types  = var.cpu_instance_types
  capacity_type   = var.cpu_capacity_type

  scaling_config {
    min_size     = var.cpu_min_nodes
    desired_size = var.cpu_min_nodes
    max_size     = var.cpu_max_nodes
  }

  labels = {
    "analytics-assets/pool" = "cpu"
  }

  depends_on = [aws_iam_role_policy_attachment.node]

  lifecycle {
    # The cluster autoscaler moves desired_size; Terraform must not move it back.
    ignore_changes = [scaling_config[0].desired_size]
  }
}

resource "aws_eks_node_group" "gpu" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "${var.name}-gpu"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = var.private_subnet_ids
  instance_types  = var.gpu_instance_types
  ami_type        = "AL2023_x86_64_NVIDIA"
  capacity_type   = "ON_DEMAND"

  # From zero: a GPU node exists only while a model-tier step asks for one.
  scaling_config {
    min_size     = 0
    desired_size = 0
    max_size     = var.gpu_max_nodes
  }

  labels = {
    "analytics-assets/pool" = "gpu"
  }

  taint {
    key    = "nvidia.com/gpu"
    value  = "present"
    effect = "NO_SCHEDULE"
  }

  tags = {
    # Lets the cluster autoscaler scale this group up from zero for pods that need a GPU.
    "k8s.io/cluster-autoscaler/node-template/label/analytics-assets/pool" = "gpu"
    "k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu"         = "present:NoSchedule"
    "k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu"     = "1"
  }

  depends_on = [aws_iam_role_policy_attachment.node]

  lifecycle {
    ignore_changes = [scaling_config[0].desired_size]
  }
}
