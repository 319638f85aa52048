"""What a live-commerce room sells and who watches it: the tables behind the simulator's product
catalogues, viewer attributes, promotions and ad spend (SPEC §2, §8-10). Data and small pure
helpers only; the behaviour (the host pinning products in turn, promotions, spend) is in `core.py`.

Figures are plausible rather than measured: a mostly female, mostly mobile audience of 24-40 year
olds from the populous provinces; prices from 9.9 to 999 yuan; conversion lifted by promotions
(a seckill most) and by follower status, and shaped by how a viewer's age band and gender fit a
product category.
"""

from __future__ import annotations

import math
import random
from itertools import accumulate

# -- products ------------------------------------------------------------------------------------
# category: ((item, typical price in yuan, spec), ...); the title is built from an optional tag,
# a made-up brand, the item and its spec.
ITEMS = {
    "美妆": (("玻尿酸补水面膜", 69, "10片装"), ("持妆粉底液", 199, "30ml"), ("丝绒哑光口红", 129, "3支装"),
           ("氨基酸洗面奶", 59, "120g"), ("清爽防晒霜SPF50+", 99, "50ml"), ("大地色眼影盘", 159, "12色"),
           ("修护精华液", 399, "50ml"), ("温和卸妆水", 49, "400ml"), ("气垫BB霜", 169, "正装+替换装"),
           ("烟酰胺身体乳", 79, "250ml"), ("抗皱面霜", 599, "50g"), ("定妆喷雾", 89, "100ml")),
    "服饰": (("纯棉圆领T恤", 59, "男女同款"), ("高腰阔腿裤", 129, "垂感显瘦"), ("羊毛针织开衫", 299, "秋冬款"),
           ("冰丝防晒外套", 99, "UPF50+"), ("法式碎花连衣裙", 199, "收腰显瘦"), ("水洗牛仔外套", 239, "宽松版"),
           ("轻薄羽绒服", 499, "90白鸭绒"), ("加绒运动卫衣", 149, "情侣款"), ("真丝衬衫", 399, "桑蚕丝"),
           ("休闲运动鞋", 259, "透气网面"), ("打底袜", 29.9, "5双装"), ("纯棉内裤", 49.9, "4条装")),
    "食品": (("每日坚果礼盒", 89, "30袋"), ("手撕牛肉干", 59.9, "500g"), ("螺蛳粉", 39.9, "5包"),
           ("五常大米", 79.9, "5kg"), ("麻辣小龙虾", 99, "4斤装"), ("纯牛奶", 49.9, "整箱24盒"),
           ("新疆灰枣", 29.9, "1kg"), ("自热火锅", 35.9, "3盒"), ("冻干速溶咖啡", 69, "24颗"),
           ("原切牛排", 199, "10片"), ("蜂蜜柚子茶", 19.9, "1kg"), ("海苔脆", 9.9, "6包")),
    "家居": (("全棉四件套", 299, "1.8m床"), ("天然乳胶枕", 129, "一对"), ("折叠收纳箱", 49.9, "3个装"),
           ("麦饭石不粘锅", 139, "28cm"), ("316保温杯", 89, "500ml"), ("无火香薰", 59, "200ml"),
           ("纯棉毛巾", 39.9, "4条装"), ("原木抽纸", 29.9, "24包"), ("空气炸锅", 299, "5L大容量"),
           ("记忆棉床垫", 899, "1.8m"), ("除螨仪", 399, "家用"), ("厨房置物架", 69, "免打孔")),
    "数码": (("降噪蓝牙耳机", 299, "长续航"), ("快充充电宝", 129, "20000mAh"), ("智能手表", 599, "血氧监测"),
           ("机械键盘", 349, "青轴"), ("学习平板", 999, "8+128G"), ("防摔手机壳", 29.9, "2个装"),
           ("快充数据线", 19.9, "3条装"), ("无线充电器", 79, "15W"), ("蓝牙音箱", 199, "防水"),
           ("声波电动牙刷", 159, "5种模式"), ("游戏鼠标", 99, "RGB"), ("移动硬盘", 459, "1TB")),
    "母婴": (("纸尿裤", 129, "L码88片"), ("婴儿湿巾", 39.9, "80抽10包"), ("儿童牙膏", 29.9, "2支装"),
           ("防胀气奶瓶", 99, "240ml"), ("轻便婴儿推车", 699, "可坐可躺"), ("儿童保温杯", 89, "吸管款"),
           ("宝宝辅食米粉", 59, "2罐"), ("儿童绘本", 69, "10册"), ("婴儿洗护套装", 119, "5件套"),
           ("益智积木", 149, "300粒"), ("儿童防晒霜", 79, "50g"), ("孕妇营养DHA", 199, "60粒")),
}
CATEGORIES = tuple(ITEMS)
BRANDS = ("源野", "初禾", "木屿", "星芮", "朴荟", "青岚", "禾光", "素言", "悦途", "橙舍", "云栖", "拾光")
TAGS = ("", "", "", "【直播间专享】", "【爆款】", "【新品】", "【限时】", "【官方正品】")
REFUND_RATE = {"美妆": 0.04, "服饰": 0.08, "食品": 0.02, "家居": 0.04, "数码": 0.05, "母婴": 0.03}

HOSTS = ("小美", "阿杰", "琳琳", "大鹏", "乐乐", "晓雯", "娜娜", "老周", "甜甜", "阿凯")
OCCASIONS = ("宠粉福利夜", "专场", "工厂直销", "新品首发", "限时秒杀", "年货节", "周末狂欢", "源头好物")


def yuan(price: float) -> float:
    """A shop price: 9.9, 39.9, 129, 1299 (ends in 9, with .9 below 100)."""
    if price < 100:
        return max(9.9, math.floor(price / 10) * 10 + 9.9) if price >= 10 else 9.9
    return float(min(math.floor(price / 10) * 10 + 9, 999))


class Product:
    __slots__ = ("product_id", "title", "category", "price", "weight", "refund", "pinned_before")

    def __init__(self, product_id: str, title: str, category: str, price: float, weight: float):
        self.product_id, self.title, self.category, self.price = product_id, title, category, price
        self.weight = weight  # how popular: clicks on products not pinned follow it
        self.refund = REFUND_RATE[category]
        self.pinned_before = False


def catalogue(rng: random.Random, index: int, size: int | None = None) -> tuple[str, list[Product]]:
    """A room's main category and its show's products (20-40; 60% of the main category)."""
    main = rng.choice(CATEGORIES)
    size = size or rng.randint(20, 40)
    products = [new_product(rng, index, n, main if rng.random() < 0.6 else rng.choice(CATEGORIES))
                for n in range(size)]
    return main, products


def new_product(rng: random.Random, index: int, n: int, category: str) -> Product:
    item, typical, spec = rng.choice(ITEMS[category])
    title = f"{rng.choice(TAGS)}{rng.choice(BRANDS)}{item} {spec}"
    price = yuan(typical * math.exp(rng.gauss(0.0, 0.25)))
    # A few hits sell most (爆款): a heavy-tailed popularity.
    return Product(f"sku-{index}-{n + 1:03d}", title, category, price, rng.paretovariate(1.5))


def relisted_price(rng: random.Random, product: Product) -> float:
    """Re-listed (改价/返场): mostly a live-room price below the current one, sometimes the same."""
    if rng.random() < 0.3:
        return product.price
    return yuan(product.price * rng.uniform(0.7, 0.95))


def show_title(rng: random.Random, main: str) -> str:
    return f"{rng.choice(HOSTS)}的直播间｜{main}{rng.choice(OCCASIONS)}"


# -- viewers -------------------------------------------------------------------------------------
def cumulative(pairs):
    """(names, cumulative weights) for `random.choices(names, cum_weights=...)`."""
    names, weights = zip(*pairs)
    return names, list(accumulate(weights))


DEVICES = cumulative((("mobile", 85), ("pc", 10), ("tv", 3), ("other", 2)))
# Provinces by population (2020 census, millions).
REGIONS = cumulative((
    ("广东", 126), ("山东", 102), ("河南", 99), ("江苏", 85), ("四川", 84), ("河北", 75), ("湖南", 66),
    ("浙江", 65), ("安徽", 61), ("湖北", 58), ("广西", 50), ("云南", 47), ("江西", 45), ("辽宁", 43),
    ("福建", 41), ("陕西", 40), ("贵州", 38), ("山西", 35), ("重庆", 32), ("黑龙江", 32), ("新疆", 26),
    ("甘肃", 25), ("上海", 25), ("内蒙古", 24), ("吉林", 24), ("北京", 22), ("天津", 14), ("海南", 10),
    ("宁夏", 7), ("青海", 6), ("西藏", 4)))
AGE_BANDS = cumulative((("18-23", 18), ("24-30", 32), ("31-40", 28), ("41-50", 14), ("50+", 8)))
GENDERS = cumulative((("female", 62), ("male", 36), ("other", 2)))
# Where viewers come from; the weight of `paid` is scaled by the room's current ad push.
SOURCE_WEIGHTS = (("organic", 35.0), ("follow", 20.0), ("paid", 20.0), ("social", 10.0), ("search", 10.0),
                  ("other", 5.0))
SOURCE_NAMES = tuple(name for name, _ in SOURCE_WEIGHTS)
FOLLOWER_SHARE = {"organic": 0.15, "follow": 0.9, "paid": 0.05, "social": 0.15, "search": 0.1, "other": 0.1}
RESOURCE_SHARE = 0.3  # a returning viewer comes in another way this often


def source_weights(paid_push: float) -> list[float]:
    return list(accumulate(w * paid_push if name == "paid" else w for name, w in SOURCE_WEIGHTS))


# How an age band and a gender fit a category: a factor on the chance to buy after a click.
AGE_FIT = {
    "18-23": {"美妆": 1.4, "服饰": 1.4, "食品": 1.0, "家居": 0.5, "数码": 1.3, "母婴": 0.3},
    "24-30": {"美妆": 1.3, "服饰": 1.2, "食品": 1.0, "家居": 0.8, "数码": 1.1, "母婴": 1.4},
    "31-40": {"美妆": 1.0, "服饰": 1.0, "食品": 1.1, "家居": 1.2, "数码": 1.0, "母婴": 1.5},
    "41-50": {"美妆": 0.7, "服饰": 0.8, "食品": 1.3, "家居": 1.4, "数码": 0.8, "母婴": 0.7},
    "50+": {"美妆": 0.5, "服饰": 0.7, "食品": 1.5, "家居": 1.3, "数码": 0.6, "母婴": 0.5},
}
GENDER_FIT = {
    "female": {"美妆": 1.3, "服饰": 1.2, "食品": 1.0, "家居": 1.1, "数码": 0.7, "母婴": 1.2},
    "male": {"美妆": 0.4, "服饰": 0.8, "食品": 1.0, "家居": 0.8, "数码": 1.7, "母婴": 0.6},
    "other": {c: 1.0 for c in CATEGORIES},
}
DEVICE_FIT = {"mobile": 1.0, "pc": 0.9, "tv": 0.4, "other": 0.8}
FOLLOWER_FIT = 1.6  # followers trust the host: they buy more
# (age band, gender, device, follower) -> {category: factor}
TASTES = {(age, gender, device, follower): {
    c: AGE_FIT[age][c] * GENDER_FIT[gender][c] * DEVICE_FIT[device] * (FOLLOWER_FIT if follower else 1.0)
    for c in CATEGORIES}
    for age in AGE_FIT for gender in GENDER_FIT for device in DEVICE_FIT for follower in (False, True)}


def _people():
    """(device, region, age band, gender) of a new viewer in one draw: the joint table of the
    independent draws (names, cumulative weights)."""
    pairs = []
    for device, dw in _weights(DEVICES):
        for region, rw in _weights(REGIONS):
            for age, aw in _weights(AGE_BANDS):
                for gender, gw in _weights(GENDERS):
                    pairs.append(((device, region, age, gender), dw * rw * aw * gw))
    return cumulative(pairs)


def _weights(names_cum):
    names, cum = names_cum
    return zip(names, (b - a for a, b in zip([0, *cum], cum)))


PEOPLE = _people()


# -- promotions and spend ------------------------------------------------------------------------
# promo type: (weight, (shortest, longest) seconds, share scoped to one product, conversion lift,
#              click lift)
PROMOS = {
    "seckill": (25, (40.0, 120.0), 1.0, 3.0, 2.0),
    "discount": (20, (120.0, 360.0), 0.6, 1.6, 1.2),
    "coupon": (25, (120.0, 360.0), 0.3, 1.4, 1.15),
    "gift": (10, (90.0, 300.0), 0.7, 1.3, 1.1),
    "lottery": (15, (60.0, 180.0), 0.0, 1.1, 1.25),
    "other": (5, (60.0, 240.0), 0.5, 1.2, 1.1),
}
PROMO_TYPES = cumulative(tuple((name, spec[0]) for name, spec in PROMOS.items()))
PROMO_GAP = (10.0, 90.0)  # seconds between one promotion's end and the next one's start

# Cost of a visitor per channel (yuan): 千川-style paid traffic, seeded social posts, search ads.
COST_PER_VISITOR = {"paid": (0.8, 2.5), "social": (0.3, 1.0), "search": (1.0, 3.0)}
PUSH_EVERY = (180.0, 480.0)  # seconds between changes of the room's paid push
