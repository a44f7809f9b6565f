variable "description" {
  description = "What the key encrypts."
  type        = string
}

variable "region" {
  description = "AWS region of the key."
  type        = string
}
