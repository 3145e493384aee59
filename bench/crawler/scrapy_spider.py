"""A minimal Scrapy spider (run with `scrapy runspider` in bench/.venv-scrapy): follow every
<a href> of every HTML page within the seeds' hosts; robots.txt obeyed via settings."""

import scrapy
from scrapy.http import HtmlResponse


class BenchSpider(scrapy.Spider):
    """Seeds and allowed hosts come as -a seeds=...,... -a hosts=...,..."""

    name = "bench"

    def __init__(self, seeds: str = "", hosts: str = "", **kwargs):
        super().__init__(**kwargs)
        self.start_urls = seeds.split(",")
        self.allowed_domains = hosts.split(",")

    def parse(self, response):
        """Yield a request for every link of an HTML page."""
        if not isinstance(response, HtmlResponse):
            return
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, callback=self.parse)
